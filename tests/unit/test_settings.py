"""Settings: typed, from INBOX_* variables; a bad value names the variable in one line."""

from __future__ import annotations

import pytest

from app.cli import main
from app.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INBOX_HTTP_PORT", "eighty"),
        ("INBOX_HTTP_PORT", "70000"),
        ("INBOX_DATABASE_URL", "mysql://localhost/x"),
        ("INBOX_NATS_URL", "http://localhost:4222"),
        ("INBOX_COMMAND_BATCH_SIZE", "0"),
        ("INBOX_LOG_LEVEL", "LOUD"),
        ("INBOX_DEMO_SPEED", "0"),
        ("INBOX_DEMO_ANCHOR", "2026-11-26T10:00:00"),  # no time zone
        ("INBOX_ORDER_RETENTION_DAYS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as bad:
        load_settings()
    message = str(bad.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INBOX_HTTP_PORT", "INBOX_HTTP_HOST", "INBOX_DATABASE_URL", "INBOX_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.database_url is None
    assert settings.nats_url is None


def test_the_command_line_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INBOX_HTTP_PORT", "-1")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "INBOX_HTTP_PORT" in err[0]


def test_a_detector_on_compressed_time_needs_the_shared_anchor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INBOX_DEMO_SPEED", "30")
    monkeypatch.delenv("INBOX_DEMO_ANCHOR", raising=False)
    assert main(["detect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "INBOX_DEMO_ANCHOR" in err[0]
    monkeypatch.setenv("INBOX_DEMO_ANCHOR", "2026-11-26T10:00:00+00:00")
    settings = load_settings()
    assert settings.demo_anchor is not None
    assert (settings.demo_speed, settings.demo_anchor.isoformat()) == (
        30.0,
        "2026-11-26T10:00:00+00:00",
    )
