"""Shared test settings and fixtures."""

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="module")
def app_url():
    """The Studio app served on 127.0.0.1 (a free port) for the tests of one module."""
    from spatialreward.config import StudioConfig
    from spatialreward.service import Services
    from ui import build_demo

    demo = build_demo(Services(StudioConfig()))
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()
