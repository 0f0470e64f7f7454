"""The kept-index: which slices of each volume a reduction keeps, as one JSON file that
datasets read instead of copied files. Written atomically; checked entry by entry on reading.

Format::

    {"strategy": "dhash", "params": {"threshold": 6, ...},
     "volumes": {"<Record.image>": {"slices": 112, "kept": [0, 3, 9, ...]}, ...},
     "summary": {"volumes": 2, "slices_in": 224, "slices_kept": 61, "ratio": 0.27,
                 "seconds": 0.4}}

`kept` lists slice indices (increasing) along the volume's axial axis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medssl.platform.errors import DataError
from medssl.platform.io import atomic_write_json


def summarize(volumes: Mapping[str, Mapping[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts over all volumes: slices in, slices kept, their ratio, and the time taken."""
    slices_in = sum(int(v["slices"]) for v in volumes.values())
    slices_kept = sum(len(v["kept"]) for v in volumes.values())
    return {
        "volumes": len(volumes),
        "slices_in": slices_in,
        "slices_kept": slices_kept,
        "ratio": slices_kept / slices_in if slices_in else 0.0,
        "seconds": float(seconds),
    }


def write_kept_index(
    path: str | Path,
    strategy: str,
    params: Mapping[str, Any],
    volumes: Mapping[str, Mapping[str, Any]],
    seconds: float = 0.0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the kept-index of `volumes` ({key: {"slices": N, "kept": [...]}}) and return it.
    Volumes are written in sorted key order so that the file does not depend on the order
    they were reduced in; `extra` adds top-level keys (e.g. a fingerprint)."""
    entries = {key: _entry(key, volumes[key]) for key in sorted(volumes)}
    document = {
        "strategy": strategy,
        "params": dict(params),
        "volumes": entries,
        "summary": summarize(entries, seconds),
        **dict(extra or {}),
    }
    atomic_write_json(path, document)
    return document


def _entry(key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    entry = dict(value)
    entry["slices"] = int(value["slices"])
    entry["kept"] = [int(i) for i in value["kept"]]
    problems = _entry_problems(key, entry)
    if problems:
        raise ValueError("; ".join(problems))
    return entry


def _entry_problems(key: str, entry: Any) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"volume '{key}': entry must be a mapping with 'slices' and 'kept'"]
    slices, kept = entry.get("slices"), entry.get("kept")
    if not isinstance(slices, int) or isinstance(slices, bool) or slices < 0:
        return [f"volume '{key}': 'slices' must be a count >= 0, got {slices!r}"]
    if not isinstance(kept, Sequence) or isinstance(kept, str):
        return [f"volume '{key}': 'kept' must be a list of slice indices, got {kept!r}"]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < slices for i in kept):
        return [f"volume '{key}': 'kept' holds an index outside 0..{slices - 1}"]
    if any(b <= a for a, b in zip(kept, kept[1:], strict=False)):
        return [f"volume '{key}': 'kept' must increase strictly"]
    return []


def read_kept_index(path: str | Path) -> dict[str, Any]:
    """The whole kept-index document, checked; DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: kept-index not found; run `medssl reduce` (or the reduce stage) first"
        )
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable kept-index JSON ({exc}); run the reduction again"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("volumes"), dict):
        raise DataError(f"{path}: not a kept-index (no 'volumes' mapping); run the reduction again")
    problems = [p for k, v in document["volumes"].items() for p in _entry_problems(k, v)]
    if problems:
        raise DataError(
            f"{path}: {len(problems)} broken volume entr{'y' if len(problems) == 1 else 'ies'}; "
            "run the reduction again:\n" + "\n".join(problems),
            problems,
        )
    return document


def load_kept_index(path: str | Path) -> dict[str, list[int]]:
    """{Record.image: kept slice indices} from a kept-index file, what datasets consume."""
    volumes = read_kept_index(path)["volumes"]
    return {key: list(entry["kept"]) for key, entry in volumes.items()}
