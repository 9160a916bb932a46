"""Durable whole-file writes (dali_pipelines._util.atomic): the old file or the new one, never half."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dali_pipelines._util.atomic import atomic_write, write_atomic, write_json_atomic


def test_bytes_text_and_json_replace_the_file_whole(tmp_path: Path) -> None:
    """Each form writes its content (parent folders made), replaces an existing file and leaves
    no temporary beside it."""
    folder = tmp_path / "new" / "folder"
    write_atomic(folder / "blob.bin", b"\x00\xffraw")
    write_atomic(folder / "note.txt", "first\n")
    write_atomic(folder / "note.txt", "zweite Zeile, ünïcode\n")
    write_json_atomic(folder / "record.json", {"a": [1, 2]})
    write_json_atomic(folder / "compact.json", {"a": [1, 2]}, indent=None)
    assert (folder / "blob.bin").read_bytes() == b"\x00\xffraw"
    assert (folder / "note.txt").read_text(encoding="utf-8") == "zweite Zeile, ünïcode\n"
    assert json.loads((folder / "record.json").read_text()) == {"a": [1, 2]}
    assert (folder / "compact.json").read_text() == '{"a": [1, 2]}\n'
    assert sorted(p.name for p in folder.iterdir()) == ["blob.bin", "compact.json", "note.txt", "record.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    """An error while writing leaves the file as it was; only the hidden temporary is new."""
    path = tmp_path / "state.json"
    write_json_atomic(path, {"step": 1})
    with pytest.raises(RuntimeError, match="disk gone"), atomic_write(path) as handle:
        handle.write('{"step": 2, "half')
        raise RuntimeError("disk gone")
    assert json.loads(path.read_text()) == {"step": 1}
    others = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(others) == 1 and others[0].startswith(".state.json.tmp-")


def test_a_fixed_temporary_left_by_an_interruption_is_overwritten(tmp_path: Path) -> None:
    """With ``temp=``, a rerun reuses the name an interrupted run left: nothing accumulates."""
    path, temp = tmp_path / "shard.tar", tmp_path / "shard.tar.partial"
    temp.write_bytes(b"half of an earlier attempt, longer than the new content")
    with atomic_write(path, "wb", temp=temp) as handle:
        handle.write(b"whole")
    assert path.read_bytes() == b"whole" and not temp.exists()
