"""Turn the prompt constants of an official evaluation script into a protocol template.

A checkpoint judges best when asked with the exact words it was trained and evaluated
with. The Studio does not ship anyone's wording; this importer reads it from the user's own
local copy of an official repository and writes one of our ``.toml`` templates::

    python -m spatialreward import-prompts ~/src/SpatialReward/eval/MERBench/dataset.py \\
        --sc SC_PROMPT_TEMPLATE --pq PQ_PROMPT --out sr-official.toml

The file is *parsed*, never imported or run (:mod:`ast`): only module-level assignments of
string literals are read (implicit concatenation and ``+`` of literals or of other such
constants are folded). Each call's text is then filled the way its script fills it:

- ``format`` (the default for SC): the script calls ``str.format(instruction=...)``, so
  ``{{`` / ``}}`` reach the model as single braces and ``{instruction}`` becomes our
  placeholder; other fields must be given with ``--field NAME=VALUE``;
- ``raw`` (the default for PQ): the script sends the text as it is (doubled braces stay
  doubled, as the model saw them);
- ``replace``: the script substitutes a marker (``--marker '<instruction>'``) with
  ``str.replace``.

Several constants joined by the script (``"\\n".join([A, B])``) are given as ``--sc A,B``
with ``--join``. Everything else - which images each call shows, regions, aggregation,
edit size, decoding - comes from a built-in protocol (``--like``).
"""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .prompts import builtin_names, load_prompts, parse_prompts

FILLS = ("format", "raw", "replace")


def string_constants(path: Path) -> dict[str, str]:
    """Module-level ``NAME = "literal"`` assignments of a Python file, folded, unexecuted."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    except SyntaxError as err:
        raise ConfigError(f"{path} is not valid Python ({err.msg}, line {err.lineno}); "
                          "give the file that defines the prompt constants") from None
    found: dict[str, str] = {}

    def fold(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return found.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = fold(node.left), fold(node.right)
            return None if left is None or right is None else left + right
        return None  # f-strings, calls, ...: not a literal, not read

    for stmt in tree.body:
        targets: list[ast.expr] = []
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        text = fold(value)
        for target in targets:
            if isinstance(target, ast.Name) and text is not None:
                found[target.id] = text
    return found


def fill(text: str, how: str, *, marker: str = "", fields: dict[str, str] | None = None,
         where: str = "") -> str:
    """The text the script sends, with the instruction left as ``{instruction}``.

    >>> fill('Rate "{instruction}" as {{"score": [a, b]}}', "format")
    'Rate "{instruction}" as {"score": [a, b]}'
    >>> fill('Edit: <instruction>', "replace", marker="<instruction>")
    'Edit: {instruction}'
    """
    if how == "raw":
        return text
    if how == "replace":
        if not marker or marker not in text:
            raise ConfigError(f"{where}: the marker {marker!r} is not in the text; pass "
                              "--marker with what the script replaces by the instruction")
        return text.replace(marker, "{instruction}")
    if how != "format":
        raise ConfigError(f"fill must be one of {', '.join(FILLS)}, got {how!r}")
    values = {"instruction": "{instruction}", **(fields or {})}
    names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    missing = sorted(names - set(values))
    if missing:
        raise ConfigError(f"{where}: the text has format fields {missing} besides "
                          "{instruction}; give each with --field NAME=VALUE")
    try:
        return text.format(**values)
    except (ValueError, IndexError, KeyError) as err:
        raise ConfigError(f"{where}: the text is not a str.format template ({err}); "
                          "use --sc-fill/--pq-fill raw or replace") from None


def import_prompts(path: Path, *, sc: str, pq: str | None = None, like: str = "spatialreward",
                   sc_fill: str = "format", pq_fill: str = "raw", join: str = "\n",
                   marker: str = "", fields: dict[str, str] | None = None,
                   name: str | None = None, sc_multi: str | None = None,
                   sources_field: str = "num_input_images") -> str:
    """The text of a template file with the wording read from ``path`` (see the module)."""
    if like not in builtin_names():
        raise ConfigError(f"--like must be a built-in protocol ({', '.join(builtin_names())})")
    constants = string_constants(path)

    def text_of(names: str, how: str, call: str,
                extra: dict[str, str] | None = None) -> str:
        parts = []
        for n in (p.strip() for p in names.split(",") if p.strip()):
            if n not in constants:
                known = ", ".join(sorted(constants)) or "none"
                raise ConfigError(f"{path} has no module-level string constant {n!r} "
                                  f"(found: {known})")
            parts.append(constants[n])
        return fill(join.join(parts), how, marker=marker, fields={**(fields or {}),
                                                                   **(extra or {})},
                    where=f"{call} from {path}")

    base = load_prompts(like)
    sc_text = text_of(sc, sc_fill, "sc")
    pq_text = text_of(pq, pq_fill, "pq") if pq else None
    # the multi-image SC names its number of inputs by a format field: ours is {num_sources}
    multi_text = (text_of(sc_multi, sc_fill, "sc_multi", {sources_field: "{num_sources}"})
                  if sc_multi else None)
    if pq_text is not None and base.pq is None:
        raise ConfigError(f"--like {like} has no PQ call to put the PQ text in")
    data: dict[str, Any] = {
        "name": name or re.sub(r"\W+", "-", f"{path.parent.name}-{path.stem}").strip("-"),
        "description": f"wording imported from {path.name} ({sc}{', ' + pq if pq else ''})",
        "regions": base.regions, "aggregation": base.aggregation,
        "edit_size": base.edit_size, "ensemble": base.ensemble,
        "sc": {"images": list(base.sc.images), "prompt": sc_text},
    }
    if pq_text is not None and base.pq is not None:
        data["pq"] = {"images": list(base.pq.images), "prompt": pq_text}
    if multi_text is not None:
        data["sc_multi"] = {"images": ["sources", "edited"], "prompt": multi_text}
    parsed = parse_prompts({**data, "generation": vars(base.generation)}, origin=str(path))
    lines = [f"# Imported by `python -m spatialreward import-prompts` from {path}",
             f"# (constants: sc={sc}{', pq=' + pq if pq else ''}; fill: sc {sc_fill}"
             f"{', pq ' + pq_fill if pq else ''}); settings from the built-in {like!r}.",
             f"# wording_sha256 = {parsed.wording_sha256}", ""]
    # JSON string escapes are valid TOML basic-string escapes: the text round-trips exactly.
    for key in ("name", "description", "edit_size", "ensemble", "aggregation"):
        lines.append(f"{key} = {json.dumps(data[key], ensure_ascii=False)}")
    lines.append(f"regions = {'true' if data['regions'] else 'false'}")
    for call in ("sc", "pq", "sc_multi"):
        if call in data:
            lines += ["", f"[{call}]", f"images = {json.dumps(data[call]['images'])}",
                      f"prompt = {json.dumps(data[call]['prompt'], ensure_ascii=False)}"]
    g = base.generation
    lines += ["", "[generation]", f"temperature = {g.temperature!r}", f"top_p = {g.top_p!r}",
              f"top_k = {g.top_k}"]
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    """Add ``import-prompts`` to the ``python -m spatialreward`` subcommands."""
    p = sub.add_parser(
        "import-prompts",
        help="write a protocol template from the prompt constants of a local official "
        "evaluation script (read with ast, never run)",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("file", help="the script that defines the prompt constants (your copy)")
    p.add_argument("--sc", required=True, help="the SC prompt's constant name(s), "
                   "comma-separated when the script joins several")
    p.add_argument("--pq", help="the PQ prompt's constant name(s)")
    p.add_argument("--sc-multi", help="the multi-image SC prompt's constant name(s) "
                   "(MMRB2 edits made from several images)")
    p.add_argument("--sources-field", default="num_input_images",
                   help="the multi-image prompt's format field for the number of inputs "
                   "(default num_input_images); it becomes our {num_sources}")
    p.add_argument("--out", required=True, help="the .toml template to write")
    p.add_argument("--like", default="spatialreward",
                   help="built-in protocol whose images, regions, aggregation and decoding "
                   "the template keeps (default spatialreward)")
    p.add_argument("--sc-fill", choices=FILLS, default="format",
                   help="how the script puts the instruction into the SC text (default format)")
    p.add_argument("--pq-fill", choices=FILLS, default="raw",
                   help="how the script fills the PQ text (default raw: sent as it is)")
    p.add_argument("--marker", default="", help="with fill=replace: the text the script "
                   "replaces by the instruction, e.g. '<instruction>'")
    p.add_argument("--join", default="\n", help="what joins several constants (default "
                   "a newline)")
    p.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                   help="a format field besides {instruction} (e.g. num_input_images=2)")
    p.add_argument("--name", help="protocol name (default from the file's path)")
    p.set_defaults(func=cmd_import_prompts)


def cmd_import_prompts(args: Any) -> int:
    fields = {}
    for item in args.field:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--field takes NAME=VALUE, got {item!r}")
        fields[key.strip()] = value
    text = import_prompts(Path(args.file).expanduser(), sc=args.sc, pq=args.pq, like=args.like,
                          sc_fill=args.sc_fill, pq_fill=args.pq_fill, join=args.join,
                          marker=args.marker, fields=fields, name=args.name,
                          sc_multi=args.sc_multi, sources_field=args.sources_field)
    out = Path(args.out).expanduser()
    out.write_text(text, encoding="utf-8")
    prompts = load_prompts(out)  # what the backend will read: it must load
    print(f"wrote {out}: protocol {prompts.name!r}, wording_sha256 {prompts.wording_sha256}")
    print(f"use it with --backend vlm:/path/to/checkpoint,prompts={out}")
    return 0
