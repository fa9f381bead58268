"""Paths taken from data files cannot escape their folder."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spatialreward.errors import UnsafePathError
from storage import resolve_inside


@pytest.mark.parametrize("bad", ["../x.png", "a/../../x.png", "/etc/passwd", "a/\x00.png"])
def test_escapes_are_refused(tmp_path, bad):
    with pytest.raises(UnsafePathError):
        resolve_inside(tmp_path, bad)


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    inside = tmp_path / "set"
    inside.mkdir()
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", inside / "link.png")
    with pytest.raises(UnsafePathError):
        resolve_inside(inside, "link.png")


def test_nested_relative_paths_resolve(tmp_path):
    assert resolve_inside(tmp_path, "a/./b/../c.png") == (tmp_path / "a" / "c.png").resolve()


@given(st.text(alphabet="ab./\\", max_size=20))
def test_result_is_always_inside(tmp_path_factory, text):
    base = tmp_path_factory.getbasetemp()
    try:
        out = resolve_inside(base, text)
    except UnsafePathError:
        return
    assert out == base.resolve() or base.resolve() in out.parents
