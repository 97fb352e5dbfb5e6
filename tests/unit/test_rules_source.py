"""The rules a process judges with (app/rules_source.py): a reload swaps a whole valid rule
set or changes nothing and says why; a version another process activated is followed; one
this process cannot parse is kept out. On an in-memory store (the contract it shares with
PostgreSQL: tests/rules_store_contract.py)."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.rules_store import Activation, ActiveRules
from app.http.health import rules_readiness
from app.rules_config import SHIPPED, RulesError, version_of
from app.rules_source import RulesSource
from tests.rules_store_contract import RulesStoreContract

SHIPPED_TEXT = SHIPPED.read_text()
_ACCEPTANCE = 'venue_acceptance_delayed = [[3.5, "medium"], [5, "high"], [8, "critical"]]'


class FakeRulesStore:
    def __init__(self) -> None:
        self.texts: dict[str, tuple[str, str]] = {}
        self.pointer: ActiveRules | None = None
        self._ticks = itertools.count(1)
        self.unresolved: dict[str, int] = {}  # open issues by kind

    async def open_issues(self, kinds: Collection[str]) -> dict[str, int]:
        return {k: n for k in kinds if (n := self.unresolved.get(k, 0))}

    async def active(self) -> ActiveRules | None:
        return self.pointer

    async def activate(self, version: str, text: str, source: str, by: str) -> Activation:
        self.texts.setdefault(version, (text, source))
        previous = self.pointer.version if self.pointer else None
        if previous != version:
            text, source = self.texts[version]
            generation = (self.pointer.generation if self.pointer else 0) + 1
            at = datetime(2026, 1, 1, tzinfo=UTC).replace(second=next(self._ticks) % 60)
            self.pointer = ActiveRules(version, text, source, generation, at, by)
        assert self.pointer is not None
        return Activation(self.pointer, previous)


class TestFakeRulesStore(RulesStoreContract):
    @pytest.fixture
    def store(self) -> FakeRulesStore:
        return FakeRulesStore()


def variant(tmp_path: Path, name: str, acceptance: str) -> Path:
    """The shipped file with another venue_acceptance_delayed line in [defaults]."""
    path = tmp_path / name
    path.write_text(SHIPPED_TEXT.replace(_ACCEPTANCE, f"venue_acceptance_delayed = {acceptance}"))
    return path


@pytest.fixture
def store() -> FakeRulesStore:
    return FakeRulesStore()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return (
        variant(tmp_path, "a.toml", '[[4, "medium"]]'),
        variant(tmp_path, "b.toml", '[[6, "high"]]'),
    )


def failed_metric() -> float | None:
    return REGISTRY.get_sample_value("inbox_rules_last_reload_failed")


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("inbox_rules_reloads_total", {"outcome": outcome}) or 0.0


async def test_start_activates_the_deployed_file_unless_it_is_active(
    store: FakeRulesStore, files: tuple[Path, Path]
) -> None:
    a, _ = files
    one = RulesSource.from_file(a, store)
    started = await one.start("start")
    assert (started.version, started.previous, started.changed) == (
        version_of(a.read_text()),
        None,
        True,
    )
    again = await RulesSource.from_file(a, store).start("start")
    assert (again.changed, again.previous) == (False, started.version)
    assert store.pointer is not None
    assert store.pointer.generation == 1


async def test_a_reload_swaps_the_whole_set_and_activates_it(
    store: FakeRulesStore, files: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = files
    live = tmp_path / "live.toml"
    live.write_text(a.read_text())
    source = RulesSource.from_file(live, store)
    await source.start("start")
    before = source.current
    live.write_text(b.read_text())
    done = await source.activate_file("ann")
    assert (done.previous, done.version, done.changed) == (
        before.version,
        version_of(b.read_text()),
        True,
    )
    assert source.current is not before
    assert source.current.version == done.version
    tiers = source.current.rules_for("restaurant", "FI").tiers["venue_acceptance_delayed"]
    assert tiers == ((6.0, "high"),)
    assert before.rules_for("restaurant", "FI").tiers["venue_acceptance_delayed"] == (
        (4.0, "medium"),
    ), "the set a batch holds is never changed under it"
    assert store.pointer is not None
    assert (store.pointer.version, store.pointer.activated_by) == (done.version, "ann")
    unchanged = await source.activate_file("ann")
    assert (unchanged.changed, unchanged.previous) == (False, done.version)


async def test_a_bad_file_changes_nothing_and_says_why(
    store: FakeRulesStore, files: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = files
    live = tmp_path / "live.toml"
    live.write_text(a.read_text())
    source = RulesSource.from_file(live, store)
    await source.start("start")
    running, pointer = source.current, store.pointer
    invalid_before = reloads("invalid")
    live.write_text(a.read_text().replace("[vertical.grocery]", "[vertical.grocery]\nspeed = 3"))
    with pytest.raises(RulesError, match=r"live\.toml: vertical\.grocery\.speed"):
        await source.activate_file("ann")
    assert source.current is running
    assert store.pointer is pointer
    assert source.last_error is not None
    assert "vertical.grocery.speed" in source.last_error.message
    assert failed_metric() == 1
    assert reloads("invalid") == invalid_before + 1
    shown = rules_readiness(source)
    assert (shown.version, shown.failed_at) == (running.version, source.last_error.at)
    assert shown.last_error is not None
    assert "vertical.grocery.speed" in shown.last_error

    live.write_text(a.read_text())  # fixed: the next reload clears it
    await source.activate_file("ann")
    assert rules_readiness(source).last_error is None
    assert failed_metric() == 0


async def test_an_unreadable_file_is_refused_naming_it(
    store: FakeRulesStore, tmp_path: Path
) -> None:
    source = RulesSource.from_file(None, store)
    with pytest.raises(RulesError, match=r"gone\.toml"):
        await source.activate_file("ann", tmp_path / "gone.toml")
    assert source.current.version == version_of(SHIPPED_TEXT)


async def test_a_follower_swaps_in_what_another_process_activated(
    store: FakeRulesStore, files: tuple[Path, Path]
) -> None:
    a, b = files
    follower = RulesSource.from_file(a, store)
    await follower.start("start")
    assert not await follower.refresh(), "nothing newer than what it activated"
    other = RulesSource.from_file(b, store)
    await other.activate_file("ann")
    assert await follower.refresh()
    assert follower.current.version == version_of(b.read_text())
    assert follower.source == str(b)
    assert not await follower.refresh()


async def test_a_version_this_process_cannot_parse_is_kept_out_and_reported(
    store: FakeRulesStore, files: tuple[Path, Path]
) -> None:
    a, _ = files
    follower = RulesSource.from_file(a, store)
    await follower.start("start")
    running = follower.current
    # What a newer release's rules could look like to this one: a key it does not know.
    newer = a.read_text() + "\n[vertical.drone]\nairspace = 'EFHK'\n"
    await store.activate(version_of(newer), newer, "newer.toml", "deploy of v2")
    assert not await follower.refresh()
    assert follower.current is running
    assert follower.last_error is not None
    assert "drone.airspace" in follower.last_error.message
    at = follower.last_error.at
    assert not await follower.refresh()
    assert follower.last_error.at == at, "an activation is judged once"


async def test_a_file_that_drops_a_kind_with_open_issues_is_refused(
    store: FakeRulesStore, tmp_path: Path
) -> None:
    """Its open issues would never be looked at again: retire a kind in two steps."""
    path = tmp_path / "rules.toml"
    path.write_text(SHIPPED_TEXT)
    source = RulesSource.from_file(path, store)
    await source.start(by="test")
    without = SHIPPED_TEXT.replace('extra_rules = ["prescription_check_pending"]\n', "")
    table = without.index("[waiting.prescription_check_pending]")
    path.write_text(without[:table])
    store.unresolved = {"prescription_check_pending": 2, "order_stale": 5}
    with pytest.raises(RulesError, match=r"drops prescription_check_pending \(2 open\)"):
        await source.activate_file("ann")
    assert source.current.version == version_of(SHIPPED_TEXT)
    assert failed_metric() == 1
    # Step one: out of the verticals' rules, the table kept: its open issues resolve.
    path.write_text(without)
    assert (await source.activate_file("ann")).changed
    assert "prescription_check_pending" in source.current.kinds
    # Step two, once none is open: the table goes.
    store.unresolved = {}
    path.write_text(without[:table])
    assert (await source.activate_file("ann")).changed
    assert "prescription_check_pending" not in source.current.kinds
