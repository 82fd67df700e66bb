"""Great Expectations results carry a run name (what was validated and the flow run) and their data
asset, and the Data Docs read offline: no page refers to another host, and the index lists the
validation results and suites as static HTML (GX's own index draws them with CDN JavaScript)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from adapters import validation
from tests.helpers import settings_for

SUITE = {
    "name": "source.accounts",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "account_id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "balance_usd", "min_value": 0},
        },
    ],
    "meta": {},
}


class Page(HTMLParser):
    """Every tag with its attributes, the text, and the index's tables as rows of (cells, links)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.tables: dict[str, list[tuple[list[str], list[str]]]] = {}
        self._table: str | None = None
        self._row: tuple[list[str], list[str]] | None = None
        self._style = False
        self.styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table = attributes.get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = ([], [])
        elif tag == "td" and self._row is not None:
            self._row[0].append("")
        elif tag == "a" and self._row is not None:
            self._row[1].append(attributes["href"])
        self._style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None and self._row[0]:
            self.tables[self._table].append(self._row)
            self._row = None
        self._style = False

    def handle_data(self, data):
        self.text.append(data)
        if self._style:
            self.styles.append(data)
        if self._row is not None and self._row[0]:
            self._row[0][-1] += data.strip()


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gx")
    settings = settings_for(tmp, tmp / "raw")
    good = pd.DataFrame({"account_id": [1, 2, 3], "balance_usd": [0.0, 5.5, 120.0]})
    bad = pd.DataFrame({"account_id": [1, None, 3], "balance_usd": [-1.0, 5.5, 120.0]})
    names = [
        validation.run_name("feature-set-20300101T000000Z-abc123", "0123456789abcdef-uuid"),
        validation.run_name("sources-20300102T000000"),
    ]
    outcomes = [
        validation.validate(settings, frame, SUITE, name=name)
        for frame, name in zip((good, bad), names, strict=True)
    ]
    return settings, names, outcomes


def test_results_carry_the_run_name_and_their_data_asset(validated):
    settings, names, outcomes = validated
    assert names == [
        "feature-set-20300101T000000Z-abc123.flow-run-01234567",
        "sources-20300102T000000",
    ]
    assert [o.success for o in outcomes] == [True, False]
    gx_dir = settings.gx_dir
    assert not [p for p in gx_dir.rglob("*") if "__none__" in p.name]
    stored = sorted((gx_dir / "gx" / validation.VALIDATIONS_STORE).rglob("*.json"))
    assert {json.loads(p.read_text())["meta"]["run_id"]["run_name"] for p in stored} == set(names)
    site = settings.data_docs_index.parent
    pages = sorted((site / "validations").rglob("*.html"))
    assert len(pages) == 2
    for page in pages:
        text = re.sub(r"\s+", " ", " ".join(parse(page).text))
        assert "Data asset: source.accounts" in text
        assert any(f"Run Name {name}" in text for name in names)


def test_data_docs_refer_to_no_other_host_and_the_index_has_its_content(validated):
    settings, names, _ = validated
    site = settings.data_docs_index.parent
    remote = re.compile(r"^(https?:)?//", re.IGNORECASE)
    for path in site.rglob("*.html"):
        page = parse(path)
        assert [tag for tag, _ in page.tags if tag == "script"] == [], path
        for tag, attributes in page.tags:
            if tag in ("link", "img", "iframe", "source"):
                for attribute in ("href", "src"):
                    assert not remote.match(attributes.get(attribute) or ""), (
                        path,
                        tag,
                        attributes,
                    )
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", " ".join(page.styles)), path
    index = parse(settings.data_docs_index)
    (results,) = [rows for css, rows in index.tables.items() if "validation-results" in css]
    assert len(results) == 2
    by_name = {cells[2]: (cells, links) for cells, links in results}
    assert set(by_name) == set(names)
    good, good_links = by_name[names[0]]
    bad, _ = by_name[names[1]]
    assert (good[0], good[3], good[4], good[5]) == (
        "passed",
        "source.accounts",
        "source.accounts",
        "2/2",
    )
    assert (bad[0], bad[5]) == ("FAILED", "0/2")
    assert (site / good_links[0]).is_file()
    (suites,) = [rows for css, rows in index.tables.items() if "expectation_suites" in css]
    assert [(cells[0], (site / links[0]).is_file()) for cells, links in suites] == [
        ("source.accounts", True)
    ]
