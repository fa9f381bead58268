"""Named errors for everything a user can get wrong.

Each front end translates these in exactly one place: the CLI prints ``str(err)``
on one line and exits non-zero, the UI raises ``gr.Error(str(err))``. Messages say
what went wrong and how to fix it, so they can be shown as they are.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ImageError(StudioError):
    """An input could not be used as an image."""


class NotAnImageError(ImageError):
    """The bytes or object are not an image format we can decode."""


class TruncatedImageError(ImageError):
    """The file is an image but ends early (an interrupted upload or copy)."""


class EmptyImageError(ImageError):
    """The image has zero width or height."""


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel or byte cap (decompression-bomb guard)."""


class InputError(StudioError):
    """A request is incomplete or malformed (an empty instruction, too many candidates)."""


class ConfigError(StudioError):
    """A setting has an invalid value."""


class UnknownBackendError(StudioError):
    """A backend name that the registry does not know."""


class UnsafePathError(StudioError):
    """A path taken from a data file points outside the folder it must stay in."""


class StoreError(StudioError):
    """The judgment store refused a request; nothing was written."""


class UnknownItemError(StoreError):
    """An item, candidate, run or judgment id that the store does not hold."""


class UnknownAnnotatorError(StoreError):
    """An annotator name that is not registered (add it with ``Store.add_annotator``)."""


class InvalidJudgmentError(StoreError):
    """A human judgment is malformed: a bad preference, score, region or time."""


class NotYourJudgmentError(StoreError):
    """An annotator tried to edit or undo another annotator's judgment."""


class DataImportError(StoreError):
    """An import file is malformed; the import wrote nothing."""


class PermissionDeniedError(StudioError):
    """The logged-in user's role may not do this (see docs/security.md)."""


class ProtocolParseError(StudioError, ValueError):
    """A generative judge's raw text holds no usable answer; the message says why."""


class JudgmentFormatError(StudioError):
    """A judgment dict/JSON does not follow the schema."""


class PairFormatError(StudioError):
    """A pair-format file or item is malformed; the message names the line."""


class BenchFormatError(InputError):
    """A dataset matches no benchmark format, or a row breaks its format's rules."""
