"""The one place where our named errors become messages in the browser, and where a
request's logged-in user is read."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from spatialreward.errors import StudioError

F = TypeVar("F", bound=Callable[..., Any])

# An absolute path (not part of a URL): the server's folders are nobody else's business.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"`/:]+/)+([^\s'\"`/:]*)")


def redact_paths(message: str) -> str:
    """Keep only the last part of absolute paths in a message shown to a remote user.

    >>> redact_paths("no dataset at /srv/data/eval/pairs.jsonl; see http://x/y/z")
    'no dataset at pairs.jsonl; see http://x/y/z'
    """
    return _ABSOLUTE.sub(r"\1", message)


def user_errors(fn: F) -> F:
    """Show a StudioError as a gradio error toast (without server paths); the app keeps
    serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StudioError as err:
            raise gr.Error(redact_paths(str(err)), print_exception=False) from err

    return wrapper  # type: ignore[return-value]


def username(request: gr.Request | None) -> str | None:
    """The logged-in user of a request (None when the app runs without ``--auth``)."""
    return getattr(request, "username", None) or None
