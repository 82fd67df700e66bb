"""adapters/tools.py: a tool's failure names the command and carries the end of its output."""

from __future__ import annotations

import sys

import pytest

from adapters.tools import TAIL, run_tool


class ToolError(RuntimeError):
    pass


def test_a_tool_that_succeeds_gives_its_stdout_with_the_given_environment(tmp_path):
    out = run_tool(
        [sys.executable, "-c", "import os; print(os.getcwd(), os.environ['GREETING'])"],
        ToolError,
        env={"GREETING": "hello"},
        cwd=tmp_path,
    )
    assert out.split() == [str(tmp_path), "hello"]


def test_a_failing_tool_raises_the_callers_error_with_the_tail_of_both_streams():
    script = "import sys; print('x' * 10000 + 'OUT-END'); sys.exit('ERR-END')"
    with pytest.raises(ToolError) as raised:
        run_tool([sys.executable, "-c", script, "third", "fourth"], ToolError)
    message = str(raised.value)
    first = message.splitlines()[0]
    assert first == f"{sys.executable.rsplit('/', 1)[-1]} -c {script} failed:"
    assert "OUT-END" in message and message.endswith("ERR-END")
    assert len(message) <= len(first) + 2 * TAIL + 3  # the tails only, not all 10,000 x's
