"""Small gradio component variants."""

from __future__ import annotations

from typing import Any

import gradio as gr

class UploadedImage(gr.Image):
    """An image upload handed to callbacks as the uploaded file's path, undecoded.

    ``gr.Image`` opens the file with PIL during preprocessing, so a corrupt upload
    fails inside gradio with a hidden, generic error. Passing the path through lets
    :func:`spatialreward.images.load_image` check and report every upload the same way.
    """

    # A "template" reuses its base class's frontend (gradio's own gr.Sketchpad does this).
    is_template = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(type="filepath", image_mode=None, **kwargs)

    def preprocess(self, payload: Any) -> Any:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return super().preprocess(payload)
    from collections.abc import Callable, Sequence
    from typing import TYPE_CHECKING, Any, Literal

    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component  # data: URLs (clipboard, webcam)
