"""Repo-wide pytest setup: where the checkout is, and tests marked `last` run at the very end.

Lab fixtures (lab, kube, netns_run, arp_who_has, ndp_who_has, http_get) are in
tests/integration/conftest.py; unit tests need none of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

# Property tests judge results, not speed: on a shared 2-core CI machine generation can be slow.
settings.register_profile("l2lb", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("l2lb")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: run after every other test (e.g. one that restarts the lab)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # stable sort: everything keeps its order, tests marked `last` move to the end
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory."""
    return REPO
