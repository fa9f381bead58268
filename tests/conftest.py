"""Shared test settings and fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@dataclass
class Studio:
    """A launched app: its URL and the services (and so the store) behind it."""

    url: str
    services: Any


def launch_studio(tmp_path, **config: Any) -> tuple[Any, Studio]:
    """Build and launch the app exactly as app.py does, on a fresh store in ``tmp_path``."""
    from spatialreward.config import StudioConfig
    from spatialreward.service import Services
    from ui import build_demo, launch_options

    services = Services(StudioConfig(db=tmp_path / "studio.db", **config))
    demo = build_demo(services)
    demo.queue(default_concurrency_limit=8)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                            **launch_options(services))
    return demo, Studio(url, services)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The Studio served on 127.0.0.1 (a free port) with its own empty store, for the
    tests of one module."""
    demo, s = launch_studio(tmp_path_factory.mktemp("studio"))
    yield s
    demo.close()


@pytest.fixture(scope="module")
def app_url(studio):
    return studio.url
