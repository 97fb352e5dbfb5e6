"""The page's copy of the API's closed values (app/web/static/js/vocabulary.js) is the
domain's: a value added to domain/values.py without the page fails here."""

from __future__ import annotations

import json
import re

from app.rules_config import load
from app.web.pages import STATIC
from domain import values

_CONSTANT = re.compile(r"export const (\w+) = (\[.*?\]);", re.S)


def _page_values() -> dict[str, list[str]]:
    text = (STATIC / "js" / "vocabulary.js").read_text()
    return {
        name: json.loads(re.sub(r",\s*\]", "]", body)) for name, body in _CONSTANT.findall(text)
    }


def test_the_page_lists_exactly_the_domains_values() -> None:
    page = _page_values()
    assert set(page) == {"STATUSES", "SEVERITIES", "VERTICALS", "KINDS", "RESOLUTIONS", "ACTIONS"}
    assert set(page["STATUSES"]) == values.STATUSES
    assert set(page["SEVERITIES"]) == set(values.SEVERITIES)
    shipped = load(None)
    assert set(page["VERTICALS"]) == set(shipped.verticals)
    assert set(page["KINDS"]) == shipped.kinds
    assert set(page["RESOLUTIONS"]) == values.RESOLUTIONS
    assert set(page["ACTIONS"]) == values.ACTIONS
    assert all(len(set(listed)) == len(listed) for listed in page.values())
