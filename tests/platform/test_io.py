"""Atomic writes: a failed write leaves the old file and no temporary; folders appear whole."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from medssl.platform.io import (
    atomic_folder,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npy,
    atomic_write_text,
)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "result.json"
    atomic_write_text(target, "old")
    seen: list[Path] = []

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("new, but only ha")
        seen.append(tmp)
        assert target.read_text() == "old"  # the target is untouched while writing
        raise error("killed mid-write")

    with pytest.raises(error):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert seen and not seen[0].exists()
    assert names(tmp_path) == ["result.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "sub" / "x.npy", fail)
    assert names(tmp_path / "sub") == []


def test_temporaries_are_unique_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    used: list[Path] = []

    def write(tmp: Path) -> None:
        used.append(tmp)
        tmp.write_bytes(b"%d" % len(used))

    atomic_write(target, write)
    atomic_write(target, write)
    assert target.read_bytes() == b"2"
    assert used[0] != used[1]
    assert all(p.parent == tmp_path and p.name.startswith(".plot.png.") for p in used)
    assert all(p.name.endswith(".tmp.png") for p in used)  # writers that go by the suffix
    assert names(tmp_path) == ["plot.png"]
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


def test_round_trips(tmp_path: Path) -> None:
    document = {"b": [1, 2.5, None], "a": {"nested": "é"}}
    atomic_write_json(tmp_path / "d.json", document)
    text = (tmp_path / "d.json").read_text(encoding="utf-8")
    assert json.loads(text) == document
    assert text == json.dumps(document, indent=1) + "\n"
    atomic_write_json(tmp_path / "s.json", document, indent=2, sort_keys=True)
    sorted_text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert (tmp_path / "s.json").read_text() == sorted_text

    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_write_npy(tmp_path / "a.npy", array)
    loaded = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)

    atomic_write_text(tmp_path / "t.md", "línea\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "línea\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert names(tmp_path) == ["a.npy", "b.bin", "d.json", "s.json", "t.md"]


def test_json_that_cannot_be_serialised_touches_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert names(tmp_path) == ["d.json"]


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert names(tmp_path) == []


def test_files_are_shared_0644(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "t.txt", "x")
    atomic_write_npy(tmp_path / "a.npy", np.zeros(2))
    for name in ("t.txt", "a.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    atomic_write(tmp_path / "p.bin", lambda tmp: tmp.write_bytes(b""), mode=0o600)
    assert stat.S_IMODE((tmp_path / "p.bin").stat().st_mode) == 0o600


def test_atomic_folder_renames_a_complete_folder(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with atomic_folder(root) as staging:
        assert staging != root and staging.parent == tmp_path and not root.exists()
        (staging / "values.npy").write_bytes(b"1")
        (staging / "meta.json").write_text("{}")
    assert names(root) == ["meta.json", "values.npy"]
    assert names(tmp_path) == ["cache"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_atomic_folder_failure_leaves_nothing(
    tmp_path: Path, error: type[BaseException]
) -> None:
    root = tmp_path / "cache"
    with pytest.raises(error), atomic_folder(root) as staging:
        (staging / "values.npy").write_bytes(b"half")
        raise error("killed")
    assert not root.exists()
    assert names(tmp_path) == []


def test_the_first_complete_folder_wins(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with atomic_folder(root) as first:
        (first / "meta.json").write_text("first")
    with atomic_folder(root) as second:
        (second / "meta.json").write_text("second")
        (second / "extra.npy").write_bytes(b"2")
    assert (root / "meta.json").read_text() == "first"
    assert names(root) == ["meta.json"]
    assert names(tmp_path) == ["cache"]
