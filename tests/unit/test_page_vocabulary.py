"""The page's copy of the API's closed values (app/web/static/js/vocabulary.js) is the
domain's: a value added to domain/values.py without the page fails here. The verticals and
kinds are not closed (the rules file declares them): the page reads them from
GET /api/rules, and no module of it keeps a list of them."""

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
    assert set(page) == {"STATUSES", "SEVERITIES", "RESOLUTIONS", "ACTIONS"}
    assert set(page["STATUSES"]) == values.STATUSES
    assert set(page["SEVERITIES"]) == set(values.SEVERITIES)
    assert set(page["RESOLUTIONS"]) == values.RESOLUTIONS
    assert set(page["ACTIONS"]) == values.ACTIONS
    assert all(len(set(listed)) == len(listed) for listed in page.values())


def test_no_module_of_the_page_lists_the_rules_files_verticals_or_kinds() -> None:
    """A list of them in the page would go stale with the next rules file: each module
    names at most one (a kind whose tiers count something other than minutes, say)."""
    shipped = load(None)
    names = set(shipped.verticals) | shipped.kinds
    for module in sorted((STATIC / "js").glob("*.js")):
        text = module.read_text()
        named = {name for name in names if f'"{name}"' in text or f"{name}:" in text}
        assert len(named) <= 1, (module.name, sorted(named))
