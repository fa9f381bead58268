"""The pair format (storage/pairs.py): reading, writing and refusing malformed items."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from storage.pairs import (
    PairFormatError,
    PairItem,
    candidate_order,
    iter_pairs,
    parse_ranking,
    read_pairs,
    write_pairs,
)


def _line(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"id": "a", "instruction": "make the cup red", "source": "src.png",
                         "candidates": ["c0.png", "c1.png"]}
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


def _write(folder: Path, *rows: Any, name: str = "pairs.jsonl") -> Path:
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _error(folder: Path, *rows: Any) -> str:
    with pytest.raises(PairFormatError) as info:
        read_pairs(_write(folder, *rows))
    return str(info.value)


# --- reading ------------------------------------------------------------------------------


def test_minimal_item_resolves_paths_against_the_file_folder(tmp_path):
    (item,) = read_pairs(_write(tmp_path, _line()))
    root = tmp_path.resolve()
    assert item.source == root / "src.png"
    assert item.candidates == (root / "c0.png", root / "c1.png")
    assert item.ranking is None and item.best is None
    assert item.dimension == "overall" and item.category is None and item.regions is None
    assert item.metadata == {}


def test_full_item(tmp_path):
    row = _line(ranking=[1, 0], dimension="consistency", category="recolor",
                regions=[[120, 340, 310.4, 560]])
    (item,) = read_pairs(_write(tmp_path, row))
    assert item.ranking == ((1,), (0,)) and item.best == (1,)
    assert item.dimension == "consistency" and item.category == "recolor"
    assert item.regions == ((120, 340, 310, 560),)


@pytest.mark.parametrize(
    "ranking, n, expected",
    [
        ([1, 0], 2, ((1,), (0,))),
        ([[0, 1]], 2, ((0, 1),)),
        ([2, [0, 1]], 3, ((2,), (0, 1))),
        ([[2, 0], 1], 3, ((2, 0), (1,))),
        ([0], 1, ((0,),)),
    ],
)
def test_ranking_forms(tmp_path, ranking, n, expected):
    row = _line(candidates=[f"c{i}.png" for i in range(n)], ranking=ranking)
    (item,) = read_pairs(_write(tmp_path, row))
    assert item.ranking == expected
    assert parse_ranking(ranking, n) == expected


def test_candidate_order_flattens_ties():
    assert list(candidate_order(((2,), (0, 1)))) == [2, 0, 1]


@pytest.mark.parametrize(
    "ranking",
    [
        [0],  # candidate 1 missing
        [0, 0],  # duplicate
        [0, [1, 0]],  # duplicate inside a tie
        [0, 1, 2],  # index out of range
        [-1, 0],
        [],
        [[]],
        [0, [1, [2]]],
        [0, 1.0],
        [True, 0],
        "0,1",
        {"0": 1},
    ],
)
def test_invalid_rankings(tmp_path, ranking):
    message = _error(tmp_path, _line(ranking=ranking))
    assert ":1:" in message and "ranking" in message


@pytest.mark.parametrize("key", ["id", "instruction", "source", "candidates"])
def test_missing_required_key(tmp_path, key):
    message = _error(tmp_path, _line(**{key: ...}))
    assert "missing" in message and key in message


@pytest.mark.parametrize(
    "over, words",
    [
        ({"candidates": []}, "candidates"),
        ({"candidates": "c0.png"}, "candidates"),
        ({"candidates": ["c0.png", 3]}, "candidates[1]"),
        ({"source": ""}, "source"),
        ({"dimension": "beauty"}, "dimension"),
        ({"dimension": ["overall"]}, "dimension"),
        ({"regions": [[0, 0, 10]]}, "region"),
        ({"regions": [[10, 0, 5, 10]]}, "region"),
        ({"regions": [[0, 0, 10, 1001]]}, "region"),
        ({"regions": [[0, 0, "a", 10]]}, ""),
        ({"regions": [[0, 0, None, 10]]}, ""),
        ({"regions": "box"}, "region"),
        ({"instruction": None}, "instruction"),
        ({"id": None}, "id"),
    ],
)
def test_invalid_fields(tmp_path, over, words):
    message = _error(tmp_path, _line(**over))
    assert message.startswith(str(tmp_path / "pairs.jsonl") + ":1:")
    assert words in message


def test_non_finite_region_is_a_format_error(tmp_path):
    # json reads Infinity/NaN; rounding them must not escape as OverflowError/ValueError.
    assert ":1:" in _error(tmp_path, '{"id": "a", "instruction": "x", "source": "s.png", '
                                     '"candidates": ["c.png"], "regions": [[0, 0, Infinity, 5]]}')
    assert ":1:" in _error(tmp_path, '{"id": "a", "instruction": "x", "source": "s.png", '
                                     '"candidates": ["c.png"], "regions": [[0, 0, NaN, 5]]}')


def test_invalid_json_names_the_line(tmp_path):
    message = _error(tmp_path, _line(id="a"), "", _line(id="b"), '{"id": "c", oops}')
    assert message.startswith(f"{tmp_path / 'pairs.jsonl'}:4:")
    assert "not valid JSON" in message


def test_not_an_object(tmp_path):
    assert "JSON object" in _error(tmp_path, _line(), "[1, 2]")


def test_duplicate_id_names_the_second_line(tmp_path):
    message = _error(tmp_path, _line(id="x"), _line(id="y"), _line(id="x"))
    assert ":3:" in message and "duplicate id 'x'" in message


def test_not_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps(_line()).encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(PairFormatError, match=":2:"):
        read_pairs(path)


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_line(id="a")).encode() + b"\r\n"
                     + json.dumps(_line(id="b")).encode() + b"\r\n")
    assert [i.id for i in read_pairs(path)] == ["a", "b"]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = _write(tmp_path, _line(id="a"), "", "   ", _line(id="b"), "", _line(id="c", ranking=[5]))
    with pytest.raises(PairFormatError, match=r"pairs\.jsonl:6:"):
        read_pairs(path)


def test_missing_dataset(tmp_path):
    with pytest.raises(PairFormatError, match="does not exist"):
        read_pairs(tmp_path / "nope.jsonl")


def test_iter_pairs_is_lazy(tmp_path):
    # Items before a bad line are delivered; the error comes when the bad line is reached.
    it = iter_pairs(_write(tmp_path, _line(id="a"), "not json"))
    assert next(it).id == "a"
    with pytest.raises(PairFormatError, match=":2:"):
        next(it)


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../x.png", "images/../../x.png", "a/../../../etc/passwd"])
def test_relative_path_leaving_the_folder_is_refused(tmp_path, bad):
    folder = tmp_path / "set"
    folder.mkdir()
    for row in (_line(source=bad), _line(candidates=["c0.png", bad])):
        with pytest.raises(PairFormatError, match="outside"):
            read_pairs(_write(folder, row))


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    (folder / "link.png").symlink_to(secret)
    (folder / "sub").symlink_to(tmp_path)
    for bad in ("link.png", "sub/secret.png"):
        with pytest.raises(PairFormatError, match=":1:.*outside"):
            read_pairs(_write(folder, _line(candidates=["c0.png", bad])))


def test_symlink_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "real.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    (item,) = read_pairs(_write(tmp_path, _line(source="link.png")))
    assert item.source == (tmp_path / "real.png").resolve()


def test_absolute_paths_are_accepted(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "img.png"
    folder = tmp_path / "set"
    folder.mkdir()
    (item,) = read_pairs(_write(folder, _line(source=str(elsewhere))))
    assert item.source == elsewhere


# --- metadata and writing -----------------------------------------------------------------


def test_extra_keys_are_kept_as_metadata(tmp_path):
    row = _line(flaw="wrong_object", difficulty=3, tags=["a", "b"], extra={"k": None})
    (item,) = read_pairs(_write(tmp_path, row))
    assert item.metadata == {"flaw": "wrong_object", "difficulty": 3, "tags": ["a", "b"],
                             "extra": {"k": None}}


def test_round_trip(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    outside = tmp_path / "other" / "o.png"
    rows = [
        _line(id="a", ranking=[1, 0], category="recolor", regions=[[1, 2, 30, 40]], flaw="x"),
        _line(id="b", candidates=["c0.png", "c1.png", str(outside)], ranking=[2, [0, 1]],
              dimension="perceptual_quality"),
        _line(id="c", candidates=["sub/c0.png", "c1.png"], ranking=[[0, 1]], note="ü ok"),
        _line(id="d"),
    ]
    items = read_pairs(_write(folder, *rows))
    out = folder / "copy.jsonl"
    assert write_pairs(out, items) == 4
    assert read_pairs(out) == items
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == rows[0]  # relative paths stay relative, keys as written
    assert lines[1]["candidates"][2] == str(outside.resolve())  # outside: written absolute
    assert lines[2]["ranking"] == [[0, 1]] and lines[2]["note"] == "ü ok"
    assert "ranking" not in lines[3] and "dimension" not in lines[3]


def test_write_into_another_folder_keeps_the_same_images(tmp_path):
    items = read_pairs(_write(tmp_path, _line(ranking=[0, 1])))
    elsewhere = tmp_path / "deeper" / "x"
    elsewhere.mkdir(parents=True)
    write_pairs(elsewhere / "pairs.jsonl", items)
    assert read_pairs(elsewhere / "pairs.jsonl") == items


def test_write_accepts_a_generator(tmp_path):
    item = PairItem(id="g", instruction="i", source=tmp_path / "s.png",
                    candidates=(tmp_path / "c.png",))
    assert write_pairs(tmp_path / "g.jsonl", (x for x in [item])) == 1
    assert read_pairs(tmp_path / "g.jsonl") == [
        PairItem(id="g", instruction="i", source=(tmp_path / "s.png").resolve(),
                 candidates=((tmp_path / "c.png").resolve(),))
    ]


def test_paths_outside_resolve_relative_to_the_real_folder(tmp_path):
    # A dataset reached through a symlinked folder still resolves inside its real folder.
    real = tmp_path / "real"
    real.mkdir()
    _write(real, _line())
    os.symlink(real, tmp_path / "alias")
    (item,) = read_pairs(tmp_path / "alias" / "pairs.jsonl")
    assert item.source == real.resolve() / "src.png"
