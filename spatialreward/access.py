"""Who may do what: roles, the actions they allow, and the login back-off.

The Studio runs in one of two modes (``docs/security.md`` has the threat model):

- **local** (no ``--auth``): one user, the machine's owner, on 127.0.0.1. Every action is
  allowed, as from the CLI.
- **``--auth``**: every request carries a logged-in annotator, and their role (stored
  with them, ``db add-annotator NAME --role ROLE``) decides:

>>> allowed("annotator", "bench"), allowed("researcher", "export")
(False, True)
>>> [role for role in ROLES if allowed(role, "import_votes")]
['admin']

Services check these, never the UI: an API call and a button click meet the same rule.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from storage.store import ROLES

from .errors import PermissionDeniedError

LOCAL_ROLE = "admin"
"""The role of the one local user when the app runs without ``--auth``."""

STAFF = ("researcher", "admin")
ACTIONS: dict[str, tuple[str, ...]] = {
    # Everyone logged in may judge, annotate (as themselves) and view results.
    "bench": STAFF,             # start a bench run (uses the model for minutes)
    "export": STAFF,            # download the whole store, everyone's votes included
    "import": STAFF,            # add items and model judgments
    "import_votes": ("admin",),  # keep the human judgments of an import (any annotator's)
    "start_run": STAFF,         # start or resume an RL run (its own process)
    "stop_run": STAFF,
}
"""Action -> the roles that may do it."""


def allowed(role: str, action: str) -> bool:
    return role in ACTIONS[action]


def require(role: str, action: str, who: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``role`` may do ``action``."""
    if role not in ROLES or not allowed(role, action):
        need = " or ".join(ACTIONS[action])
        raise PermissionDeniedError(
            f"{who} ({role}) may not {action.replace('_', ' ')}: that needs the role {need}. "
            "Ask an admin to do it, or to give you that role")


class LoginThrottle:
    """Per-name back-off after failed logins: from the ``free``-th failure in a row, the
    name is locked for ``base * 2**k`` seconds (at most ``cap``); a success clears it.

    Names need not exist: unknown names are throttled the same way, so the back-off says
    nothing about who is registered.

    >>> t = LoginThrottle(free=2, base=1.0, cap=8.0, clock=lambda: 0.0)
    >>> t.failed("bob"); t.wait("bob")
    0.0
    >>> t.failed("bob"); t.wait("bob")
    1.0
    """

    def __init__(self, free: int = 3, base: float = 1.0, cap: float = 60.0,
                 max_names: int = 10_000, clock: object = time.monotonic) -> None:
        self.free, self.base, self.cap, self.max_names = free, base, cap, max_names
        self._clock = clock
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def wait(self, name: str) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        with self._lock:
            n, last = self._fails.get(name, (0, 0.0))
        if n < self.free:
            return 0.0
        lock = min(self.base * 2 ** (n - self.free), self.cap)
        return max(0.0, last + lock - self._now())

    def failed(self, name: str) -> None:
        with self._lock:
            n, _ = self._fails.pop(name, (0, 0.0))
            self._fails[name] = (n + 1, self._now())
            while len(self._fails) > self.max_names:
                self._fails.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._fails.pop(name, None)
