"""The JSON layouts the official evaluation scripts read, beside the HF tables.

- **MER-Bench as JSON** (the SpatialReward repository's first release): a folder with
  ``2pair.json``, ``3pair.json``, ``4pair.json`` (any of them), or one such file; each a
  list of ``{"pair_id", "instruction", "original_image": path, "edited_images":
  [{"edited_image": path, "quality": ...}, ...] (best first), "label"?}``.
- **EditReward-Bench as ``bench.jsonl``** (EditScore's benchmark as the SpatialReward
  repository ships it): one JSON object per line, ``{"idx", "key": [k1, k2],
  "instruction", "task_type", "dimension", "input_image": path, "output_images": [path
  (preferred), path], ...}``.

Image paths are relative to the file's folder and may not leave it. The released
``bench.jsonl`` holds absolute paths from its authors' machine: those are refused unless
the caller passes ``allow_absolute`` (``bench --allow-absolute-paths``), which reads them
as given, warns, and counts them in ``notes.absolute_paths``.
"""

from __future__ import annotations

import json
import sys
from itertools import islice
from pathlib import Path
from typing import Any

from storage.paths import resolve_inside

from ..errors import BenchFormatError, ImageError, UnsafePathError
from .types import BenchItem

MERBENCH_FILES = ("2pair.json", "3pair.json", "4pair.json")
EDITSCORE_KEYS = {"key", "instruction", "task_type", "dimension", "input_image",
                  "output_images"}
DIMENSIONS = ("prompt_following", "consistency", "overall")


def merbench_files(path: Path) -> list[Path] | None:
    """The MER-Bench JSON files ``path`` names (a folder of NpairJSON files, or one)."""
    if path.is_dir():
        files = [path / name for name in MERBENCH_FILES if (path / name).is_file()]
        return files or None
    if path.suffix.lower() == ".json" and path.is_file():
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
        if head.lstrip().startswith("[") and '"edited_images"' in head and '"pair_id"' in head:
            return [path]
    return None


def editscore_jsonl(path: Path) -> Path | None:
    """``path`` (or a folder's ``bench.jsonl``) when its first line is an EditReward-Bench
    row, else None."""
    file = path / "bench.jsonl" if path.is_dir() else path
    if file.suffix.lower() != ".jsonl" or not file.is_file():
        return None
    with file.open(encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    try:
        row = json.loads(first)
    except ValueError:
        return None
    return file if isinstance(row, dict) and EDITSCORE_KEYS <= set(row) else None


class _Paths:
    """Image paths of one data file: inside its folder, or absolute when allowed."""

    def __init__(self, folder: Path, allow_absolute: bool) -> None:
        self.folder, self.allow_absolute, self.absolute = folder, allow_absolute, 0

    def __call__(self, value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value:
            raise BenchFormatError(f"{where}: an image path must be non-empty text, "
                                   f"got {value!r}")
        if Path(value).is_absolute():
            if not self.allow_absolute:
                raise UnsafePathError(
                    f"{where}: {value!r} is an absolute path (from the machine the file was "
                    "made on). Copy the images next to the file and make the paths "
                    "relative, or pass --allow-absolute-paths to read them as given")
            self.absolute += 1
            path = Path(value)
            if not path.is_file():
                raise ImageError(f"{where}: no image at {value}")
            return path
        return resolve_inside(self.folder, value)

    def notes(self) -> dict[str, Any]:
        if not self.absolute:
            return {}
        print(f"warning: read {self.absolute} image path(s) as absolute paths "
              "(--allow-absolute-paths)", file=sys.stderr)
        return {"absolute_paths": self.absolute}


def load_merbench_json(files: list[Path], limit: int | None, allow_absolute: bool = False
                       ) -> tuple[list[BenchItem], dict[str, Any]]:
    items: list[BenchItem] = []
    notes: dict[str, Any] = {}
    for file in files:
        paths = _Paths(file.resolve().parent, allow_absolute)
        try:
            rows = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BenchFormatError(f"{file} is not MER-Bench JSON ({err})") from None
        if not isinstance(rows, list):
            raise BenchFormatError(f"{file}: MER-Bench JSON is a list of samples")
        left = None if limit is None else limit - len(items)
        for k, row in enumerate(islice(rows, left)):
            where = f"{file.name} sample {k}"
            try:
                edited = [e["edited_image"] if isinstance(e, dict) else e
                          for e in row["edited_images"]]
                if len(edited) < 2:
                    raise ValueError("edited_images must hold 2+ images, best first")
                n = len(edited)
                items.append(BenchItem(
                    id=str(row["pair_id"]), instruction=str(row["instruction"]),
                    source=paths(row["original_image"], where),
                    candidates=tuple(paths(e, where) for e in edited),
                    ranking=tuple((i,) for i in range(n)),
                    category=str(row.get("label") or "(missing)"),
                    metadata={"k": n, "split": file.stem}))
            except (KeyError, TypeError, ValueError) as err:
                raise BenchFormatError(f"{where}: {err}") from None
        for key, value in paths.notes().items():
            notes[key] = notes.get(key, 0) + value
    return items, notes


def load_editscore_jsonl(file: Path, limit: int | None, allow_absolute: bool = False
                         ) -> tuple[list[BenchItem], dict[str, Any]]:
    paths = _Paths(file.resolve().parent, allow_absolute)
    items: list[BenchItem] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(islice(fh, limit), 1):
            if not line.strip():
                continue
            where = f"{file.name}:{lineno}"
            try:
                row = json.loads(line)
                outputs = row["output_images"]
                if not isinstance(outputs, list) or len(outputs) != 2:
                    raise ValueError("output_images must hold 2 images (preferred first)")
                if row["dimension"] not in DIMENSIONS:
                    raise ValueError(f"dimension {row['dimension']!r} is not one of "
                                     f"{', '.join(DIMENSIONS)}")
                key = row["key"] if isinstance(row["key"], list) else [row["key"]]
                items.append(BenchItem(
                    id=f"{'|'.join(str(k) for k in key)}:{row['dimension']}",
                    instruction=str(row["instruction"]),
                    source=paths(row["input_image"], where),
                    candidates=(paths(outputs[0], where), paths(outputs[1], where)),
                    ranking=((0,), (1,)), dimension=row["dimension"],
                    category=str(row["task_type"]),
                    metadata={"task_type": str(row["task_type"]),
                              "key": [str(k) for k in key]}))
            except (KeyError, TypeError, ValueError) as err:
                raise BenchFormatError(f"{where}: {err}") from None
    return items, paths.notes()
