"""The store's images: content-addressed files under ``<data_dir>/images``, one row each.

An image is stored once, by the SHA-256 of its bytes (never re-encoded): its file is
``images/<sha[:2]>/<sha>.<ext>`` beside the database, its ``images`` row holds format
and size. An in-memory store (tests, doctests) keeps the bytes in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spatialreward.errors import UnknownItemError

from .connection import StoreConnection, now
from .paths import resolve_inside


def image_sha256(data: bytes) -> str:
    """The hex SHA-256 of an image's bytes: its name in the store.

    >>> image_sha256(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def item_content_key(instruction: str, dimension: str, source: str,
                     candidates: Sequence[str]) -> str:
    """The name of an item's content: the hex SHA-256 of its instruction (stripped), its
    dimension and its images' hashes (source, then the candidates in order). The store
    holds one item per content key, whatever path, uid or dataset it came under; the
    dimension is part of it because a ranking means something only for its dimension.

    >>> item_content_key(" make it red ", "overall", "a", ["b"]) == item_content_key(
    ...     "make it red", "overall", "a", ["b"])
    True
    >>> item_content_key("x", "overall", "a", ["b", "c"]) == item_content_key(
    ...     "x", "overall", "a", ["c", "b"])
    False
    """
    text = json.dumps([instruction.strip(), dimension, source, list(candidates)])
    return hashlib.sha256(text.encode()).hexdigest()


class ImageStore(StoreConnection):
    """The ``images`` table and the files it names (a part of :class:`~storage.store.Store`)."""

    def put_image(self, image: Any) -> str:
        """Store an image once, by the SHA-256 of its bytes; returns the hash.

        ``image``: encoded bytes, a path, or anything :func:`spatialreward.images.load_image`
        reads (a PIL image or an array is stored as PNG). The bytes are checked to be an
        image within the size caps first."""
        from PIL import Image

        from spatialreward.images import load_image

        if isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            data = Path(image).read_bytes()
        else:
            buf = io.BytesIO()
            load_image(image).save(buf, format="PNG")
            data = buf.getvalue()
        rgb = load_image(data)  # raises a named ImageError on anything unusable
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "PNG").upper()
        sha = image_sha256(data)
        if self.image_exists(sha):
            return sha
        rel = f"images/{sha[:2]}/{sha}.{fmt.lower()}"
        if self.data_dir is None:
            self._memory_images[sha] = data
        else:
            self._write_image_file(rel, data)  # outside the lock: the slow part
        with self.write():
            if self.data_dir is not None:
                # remove_orphan_images deletes under this lock: checked again here, the
                # file cannot vanish between this check and its row.
                self._write_image_file(rel, data)
            self._insert("images", {
                "sha256": sha, "path": rel, "format": fmt, "width": rgb.width,
                "height": rgb.height, "bytes": len(data), "created_at": now()}, ignore=True)
        return sha

    def _write_image_file(self, rel: str, data: bytes) -> None:
        assert self.data_dir is not None
        target = self.data_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # readers never see half a file

    @property
    def _memory_images(self) -> dict[str, bytes]:
        # An in-memory store (tests, doctests) keeps image bytes in memory too.
        if not hasattr(self, "_mem"):
            self._mem: dict[str, bytes] = {}
        return self._mem

    def image_exists(self, sha: str) -> bool:
        """True when the store holds the image with this SHA-256."""
        return self._one("SELECT 1 AS x FROM images WHERE sha256 = ?", [sha]) is not None

    def image_info(self, sha: str) -> dict[str, Any]:
        """The ``images`` row of an image: ``sha256``, ``path`` (relative to the data
        folder), ``format`` (``PNG``, ``JPEG``, ...), ``width``, ``height``, ``bytes``,
        ``created_at``."""
        row = self._one("SELECT * FROM images WHERE sha256 = ?", [sha])
        if row is None:
            raise UnknownItemError(f"no image {sha} in the store")
        return row

    def image_bytes(self, sha: str) -> bytes:
        """The image's original bytes."""
        row = self.image_info(sha)
        if self.data_dir is None:
            return self._memory_images[sha]
        return resolve_inside(self.data_dir, row["path"]).read_bytes()

    def image_path(self, sha: str) -> Path:
        """The image's file (a store on disk only)."""
        row = self._one("SELECT path FROM images WHERE sha256 = ?", [sha])
        if row is None or self.data_dir is None:
            raise UnknownItemError(f"no image file {sha} in the store")
        return resolve_inside(self.data_dir, row["path"])
