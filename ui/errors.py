"""The one place where our named errors become messages in the browser."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from spatialreward.errors import StudioError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Show a StudioError as a gradio error toast; the app keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StudioError as err:
            raise gr.Error(str(err), print_exception=False) from err

    return wrapper  # type: ignore[return-value]
