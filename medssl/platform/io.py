"""Atomic writes: every file or folder medssl writes appears whole or not at all.

A writer fills a uniquely named hidden temporary beside the target, flushes it to disk, then
renames it over the target; a reader (or a run resumed after SIGKILL) sees the old content or
the new, never half of one, and a failed write leaves no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_folder",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npy",
    "atomic_write_text",
    "save_figure",
]


def _fsync_folder(folder: Path) -> None:
    """Persist a rename inside `folder` (not possible on every platform: skipped there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object], *, mode: int = 0o644) -> None:
    """Call `write(tmp)` on a fresh temporary file beside `path`, fsync it, then rename it
    over `path`. `write` may open `tmp` itself (numpy, safetensors, nibabel all can).
    On any failure, including KeyboardInterrupt, the temporary is removed and `path` is
    left as it was.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write(target, lambda tmp: tmp.write_text("hello"))
        >>> target.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A suffix-preserving name: writers such as nibabel pick the format from the suffix.
    suffix = "".join(path.suffixes[-2:]) if path.suffix else ""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp makes 0600; outputs are shared like any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(
    path: str | Path, document: Any, *, indent: int | None = 1, sort_keys: bool = False
) -> None:
    """Write `document` as JSON (with a final newline) to `path` atomically. The document is
    serialised before anything touches the disk, so a value JSON cannot hold fails early."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys) + "\n"
    atomic_write_text(path, text)


def atomic_write_npy(path: str | Path, array: Any) -> None:
    """Write one array as `.npy` (no pickles) to `path` atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


def save_figure(fig: Any, path: str | Path, *, dpi: int = 100) -> None:
    """Save a matplotlib figure as a PNG at `path` atomically (the format is named, since the
    temporary's suffix is not the target's)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Fill a private staging folder beside `path`, then rename it to `path`.

    Yields the staging folder. When the block raises, the staging folder is removed and
    `path` is untouched. When `path` already exists as a folder (another process finished
    the same work first), the staging folder is dropped and the existing one kept: the
    first complete folder wins.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "cache"
        >>> with atomic_folder(root) as staging:
        ...     _ = (staging / "meta.json").write_text("{}")
        >>> sorted(p.name for p in root.iterdir())
        ['meta.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        yield staging
        for item in staging.rglob("*"):  # flushed before the rename makes them visible
            if item.is_file():
                with open(item, "rb+") as f:
                    os.fsync(f.fileno())
        try:
            os.replace(staging, path)
        except OSError:
            if not path.is_dir():
                raise
        _fsync_folder(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
