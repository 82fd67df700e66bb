"""benchmarks/serving.py: the server's CPU seconds behind its rows per CPU-second."""

from __future__ import annotations

from benchmarks.serving import cpu_used, stat_cpu_seconds

# pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
STAT = "4242 (uvicorn: (worker) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 7 3 20 0 3 0"


def test_cpu_seconds_are_utime_plus_stime_even_when_the_name_holds_parentheses():
    assert stat_cpu_seconds(STAT, 100) == 3.0  # (250 + 50) ticks; the children's 7 + 3 are not ours


def test_a_tree_counts_what_each_process_used_in_between_and_a_new_process_from_zero():
    before = {10: 5.0, 11: 2.0}
    after = {10: 6.5, 11: 2.25, 12: 0.5}  # 12 started during the load (a worker respawned)
    assert cpu_used(before, after) == 1.5 + 0.25 + 0.5


def test_a_process_that_ended_in_between_adds_nothing():
    assert cpu_used({10: 5.0, 11: 2.0}, {10: 5.5}) == 0.5
