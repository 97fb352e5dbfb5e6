"""The contract of the rules versions' store (app/rules_source.py: RulesStore), run against
the in-memory fake (tests/unit/test_rules_source.py) and PostgreSQL
(tests/integration/test_rules_reload.py): each subclass gives a ``store`` fixture."""

from __future__ import annotations

from app.rules_source import RulesStore


class RulesStoreContract:
    async def test_nothing_is_active_at_first(self, store: RulesStore) -> None:
        assert await store.active() is None
        assert await store.open_issues(["prescription_check_pending"]) == {}

    async def test_activating_moves_the_pointer_once_per_change(self, store: RulesStore) -> None:
        first = await store.activate("v1", "text one", "a.toml", "ann")
        assert (first.previous, first.changed, first.active.generation) == (None, True, 1)
        assert (first.active.version, first.active.text, first.active.source) == (
            "v1",
            "text one",
            "a.toml",
        )
        assert first.active.activated_by == "ann"
        again = await store.activate("v1", "text one", "a.toml", "bob")
        assert (again.previous, again.changed, again.active.generation) == ("v1", False, 1)
        assert again.active.activated_by == "ann", "an unchanged activation records nothing"
        second = await store.activate("v2", "text two", "b.toml", "bob")
        assert (second.previous, second.changed, second.active.generation) == ("v1", True, 2)
        back = await store.activate("v1", "text one", "a.toml", "cy")
        assert (back.previous, back.active.version, back.active.generation) == ("v2", "v1", 3)
        active = await store.active()
        assert active is not None
        assert (active.version, active.text, active.generation, active.activated_by) == (
            "v1",
            "text one",
            3,
            "cy",
        )
