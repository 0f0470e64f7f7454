"""Shipped pipeline YAMLs, one per (modality, method) worth showing."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).parent


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A config file as given, or the shipped preset of that name (a folder of the same name,
    such as a run folder `--out ucr-ts2vec`, does not hide the preset)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = PRESET_DIR / f"{path.stem}.yaml"
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    return path
