"""`make screenshots`' capture on local pages (seconds; skipped without Debian's chromium, which
`make chromium` installs): a page is captured only once it shows its texts, a blank page and a page
that never shows them are refused with what was wrong, requests to other hosts are reported, and the
automation the Automations shot expects is the one prefect.yaml declares. The whole `make
screenshots` run (stack, scenario, eight UIs) takes minutes and is run by hand (README)."""

from __future__ import annotations

import shutil

import pytest

from ops import screenshots
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="no chromium on PATH (make chromium installs it)"
)


@pytest.fixture(scope="module")
def devtools(tmp_path_factory):
    log = tmp_path_factory.mktemp("chromium") / "chromium.log"
    with screenshots.chromium(screenshots.find_chromium(), log) as connection:
        yield connection


def page(tmp_path, body: str, name: str = "page", **kwargs) -> screenshots.Page:
    path = tmp_path / f"{name}.html"
    path.write_text(f"<!doctype html><html><body>{body}</body></html>")
    return screenshots.Page(name, "a test page", path.as_uri(), **kwargs)


# text drawn a moment after load, as an SPA draws after its API answered
LATE = """<h1>runs</h1><script>setTimeout(() => {
  const list = document.createElement('ul');
  for (const [name, colour] of [['Rejected', '#c33'], ['Alerting', '#e90'], ['Completed', '#2a4']])
    list.innerHTML += `<li style="background:${colour};color:#fff;padding:20px">${name}</li>`;
  document.body.append(list);
}, 1500)</script>"""


def test_a_page_is_captured_once_it_shows_its_texts(devtools, tmp_path):
    shot = screenshots.capture(
        devtools,
        page(tmp_path, LATE, expect=("Rejected", "Alerting", "Completed"), height=600),
        tmp_path / "runs.png",
        timeout=30,
    )
    from PIL import Image

    with Image.open(shot.path) as image:
        assert image.size == (screenshots.WIDTH, 600)
        assert image.convert("RGB").getpixel((200, 140)) != (255, 255, 255)  # the list is drawn
    assert shot.colours > screenshots.MIN_COLOURS and shot.external == []


def test_tidy_runs_before_the_capture_and_its_texts_are_waited_for(devtools, tmp_path):
    body = "<button onclick=\"document.body.innerHTML += '<p>opened</p>'\">open</button>" + LATE
    shot = screenshots.capture(
        devtools,
        page(
            tmp_path,
            body,
            expect=("open",),
            tidy="document.querySelector('button').click()",
            after=("opened", "Completed"),
        ),
        tmp_path / "tidy.png",
        timeout=30,
    )
    assert shot.path.is_file()


def test_a_page_that_never_shows_a_text_is_refused_naming_it(devtools, tmp_path):
    with pytest.raises(screenshots.ScreenshotError, match=r"did not show \['Alerting'\]"):
        screenshots.capture(
            devtools,
            page(tmp_path, "<h1>Rejected</h1>", expect=("Rejected", "Alerting")),
            tmp_path / "missing.png",
            timeout=3,
        )


def test_a_ready_condition_is_waited_for_and_named_when_it_never_holds(devtools, tmp_path):
    drawn = "<h1>charts</h1><script>setTimeout(() => { window.drawn = true }, 1500)</script>"
    shot = screenshots.capture(
        devtools,
        page(tmp_path, drawn, expect=("charts",), ready="window.drawn === true"),
        tmp_path / "drawn.png",
        timeout=30,
    )
    assert shot.path.is_file()
    with pytest.raises(screenshots.ScreenshotError, match=r"window.never === true"):
        screenshots.capture(
            devtools,
            page(tmp_path, "<h1>charts</h1>", expect=("charts",), ready="window.never === true"),
            tmp_path / "never.png",
            timeout=3,
        )


def test_a_blank_page_is_refused(devtools, tmp_path):
    with pytest.raises(screenshots.ScreenshotError, match="is blank"):
        screenshots.capture(devtools, page(tmp_path, "", expect=()), tmp_path / "blank.png")


def test_requests_to_other_hosts_are_reported(devtools, tmp_path):
    body = '<h1>badges</h1><img src="http://192.0.2.1/badge.svg">'  # TEST-NET-1: never answers
    shot = screenshots.capture(
        devtools, page(tmp_path, body, expect=("badges",)), tmp_path / "external.png"
    )
    assert shot.external == ["http://192.0.2.1/badge.svg"]


def test_the_automation_expected_is_the_trigger_prefect_yaml_declares():
    assert screenshots.automation_names(ROOT) == ["retrain when the monitor requests it"]
