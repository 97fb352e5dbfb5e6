"""Scopes in memory: what is in one, the field that puts an issue outside, the inbox
filters of a scoped caller, and the read cache keeping each scope's answers apart."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from litestar.datastructures import MultiDict

from app.http import cache
from app.http.reads import filters
from app.principal import Principal
from app.queries import FILTER_NAMES, Filters
from app.scope import EVERYWHERE, Scope

FI_RESTAURANTS = Scope(verticals=frozenset({"restaurant"}), countries=frozenset({"FI"}))


def test_a_scope_bounds_verticals_and_countries_each_when_given() -> None:
    assert EVERYWHERE.everywhere
    assert EVERYWHERE.sees("parcel", "DE")
    assert FI_RESTAURANTS.sees("restaurant", "FI")
    assert FI_RESTAURANTS.outside("grocery", "DE") == "vertical"
    assert FI_RESTAURANTS.outside("restaurant", "DE") == "country"
    assert Scope(countries=frozenset({"FI"})).sees("parcel", "FI")
    nowhere = Scope(verticals=frozenset())
    assert not nowhere.everywhere
    assert not nowhere.sees("restaurant", "FI")


def test_a_scope_is_the_tokens_claims() -> None:
    principal = Principal("ann", "agent", countries=frozenset({"FI", "SE"}))
    assert Scope.of(principal) == Scope(countries=frozenset({"SE", "FI"}))
    assert Scope.of(Principal("root", "admin")) == EVERYWHERE


def test_the_scope_is_no_query_parameter_and_is_rendered_in_the_filters_sql() -> None:
    assert "scope" not in FILTER_NAMES
    params: list[Any] = []
    where = Filters(country=("DE",), scope=FI_RESTAURANTS).where(params)
    assert where == (
        "status <> 'resolved' AND country = ANY($1::text[])"
        " AND vertical = ANY($2::text[]) AND country = ANY($3::text[])"
    )
    assert params == [["DE"], ["restaurant"], ["FI"]]
    assert Filters().where([]) == "status <> 'resolved'"


def test_the_filters_dependency_takes_the_callers_scope() -> None:
    caller = Principal("ann", "agent", verticals=frozenset({"restaurant"}))
    made = filters(caller=caller, country=("FI",))
    assert made == Filters(country=("FI",), scope=Scope(verticals=frozenset({"restaurant"})))


class _Positions:
    live = True

    def known(self, _name: str) -> int:
        return 10


def _key(user: Principal | None, query: str = "country=FI") -> str:
    scope: dict[str, Any] = {"state": {}, "query_string": query.encode()}
    if user is not None:
        scope["user"] = user
    request = SimpleNamespace(
        scope=scope,
        method="GET",
        url=SimpleNamespace(path="/api/issues"),
        query_params=MultiDict([("country", query.partition("=")[2])]),
        app=SimpleNamespace(state=SimpleNamespace(positions=_Positions())),
    )
    return cache.keyed_by("inbox")(request)  # type: ignore[arg-type]


def test_the_read_cache_keeps_each_scopes_answers_apart() -> None:
    fi = Principal("ann", "agent", countries=frozenset({"FI"}))
    assert _key(fi) == _key(Principal("bob", "auditor", countries=frozenset({"FI"})))
    assert _key(fi) != _key(Principal("eve", "agent", countries=frozenset({"SE"})))
    assert _key(fi) != _key(Principal("eve", "agent", verticals=frozenset({"FI"})))
    assert _key(Principal("root", "admin")) != _key(fi)
    # Values that would run together in a plain list stay apart.
    joined = Principal("x", "agent", countries=frozenset({"FI,SE"}))
    assert _key(joined) != _key(Principal("x", "agent", countries=frozenset({"FI", "SE"})))
