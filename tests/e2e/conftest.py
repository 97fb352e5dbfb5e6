"""The running API as a separate process (``inbox api``), reached over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.bootstrap import Endpoints
from tests.api_process import running_api


@pytest.fixture(scope="session")
def api(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with running_api(endpoints, log_path) as base_url:
        yield base_url


@pytest.fixture
def http(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=10) as client:
        yield client
