"""Finding a series dataset (a file, a folder with `<Name>_TRAIN.*` / `<Name>_TEST.*`, or the
prefix `<folder>/<Name>`) and checking it whole: every problem of every file, at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.modalities.base import Problem
from medssl.modalities.timeseries.readers import SERIES_SUFFIXES, CsvOptions, parse_file
from medssl.modalities.timeseries.series import ParsedSeries, map_labels

log = logging.getLogger(__name__)

#: When one name exists in several formats (UEA ships .ts and .arff side by side).
_PREFERENCE = (".ts", ".tsv", ".arff", ".npz", ".npy", ".csv")
_SPLIT_SUFFIX = re.compile(r"^(?P<name>.+)_(?P<split>TRAIN|TEST|VAL|VALID|VALIDATION)$", re.I)
_SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2, None: 3}


@dataclass(frozen=True)
class SeriesFile:
    """One file of a dataset and the split its name marks (None when unmarked)."""

    path: str
    split: str | None


def split_of(path: Path) -> tuple[str, str | None]:
    """(dataset name, split) from a file name such as `GunPoint_TRAIN.ts`."""
    match = _SPLIT_SUFFIX.match(path.stem)
    if match is None:
        return path.stem, None
    return match["name"], _SPLIT_NAMES[match["split"].lower()]


def discover_files(path: str | Path) -> tuple[list[SeriesFile], list[Problem]]:
    """The files of the dataset at `path`, train first, and the problems of listing them."""
    p = Path(path)
    if p.is_file():
        return [SeriesFile(str(p), split_of(p)[1])], []
    if p.is_dir():
        candidates = [f for f in sorted(p.iterdir()) if f.suffix.lower() in SERIES_SUFFIXES]
        split_files = [f for f in candidates if split_of(f)[1] is not None]
        names = sorted({split_of(f)[0] for f in split_files})
        if len(names) > 1:
            return [], [
                Problem(
                    str(p),
                    f"holds several datasets ({', '.join(names)}); give one as "
                    f"{p / names[0]} (the folder and the name before _TRAIN)",
                )
            ]
        if not names:
            if len(candidates) == 1:
                return [SeriesFile(str(candidates[0]), None)], []
            found = f"{len(candidates)} series files" if candidates else "no series file"
            return [], [
                Problem(str(p), f"has {found} and no <Name>_TRAIN / <Name>_TEST pair to read")
            ]
        return _pick(split_files, str(p)), []
    if p.parent.is_dir():
        matches = [
            f
            for f in sorted(p.parent.iterdir())
            if f.suffix.lower() in SERIES_SUFFIXES
            and split_of(f)[0] == p.name
            and split_of(f)[1] is not None
        ]
        if matches:
            return _pick(matches, str(p)), []
    return [], [Problem(str(p), "does not exist; give a series file, a folder or <folder>/<Name>")]


def _pick(files: list[Path], where: str) -> list[SeriesFile]:
    """One file per split, preferring .ts over .arff etc. when a name has several formats."""
    by_split: dict[str | None, list[Path]] = {}
    for f in files:
        by_split.setdefault(split_of(f)[1], []).append(f)
    chosen = []
    for split, group in by_split.items():
        group.sort(key=lambda f: _PREFERENCE.index(f.suffix.lower()))
        if len(group) > 1:
            log.info(
                "%s: reading %s, ignoring %s", where, group[0].name, [g.name for g in group[1:]]
            )
        chosen.append(SeriesFile(str(group[0]), split))
    return sorted(chosen, key=lambda f: _SPLIT_ORDER[f.split])


@dataclass
class ParsedDataset:
    """Every file parsed, labels mapped to the training file's classes, and all problems."""

    files: list[SeriesFile]
    parsed: list[ParsedSeries]
    labels: list[np.ndarray | None]
    class_names: tuple[str, ...]
    problems: list[Problem]


def parse_dataset(files: list[SeriesFile], csv_options: CsvOptions | None = None) -> ParsedDataset:
    """Parse every file, map each file's labels against the training file's classes (a test
    label the training file lacks is a problem), and compare channel counts across files."""
    parsed = [parse_file(f.path, csv_options) for f in files]
    splits = [f.split for f in files]
    ref = splits.index("train") if "train" in splits else 0
    names: tuple[str, ...] = ()
    labels: list[np.ndarray | None] = [None] * len(parsed)
    if parsed:
        labels[ref], names = map_labels(parsed[ref], None)
    for k, p in enumerate(parsed):
        if k != ref and p.raw_labels is not None:
            labels[k], _ = map_labels(p, names or None, parsed[ref].source)
    problems = [problem for p in parsed for problem in p.problems]
    problems += _channel_problems(parsed)
    return ParsedDataset(files, parsed, labels, names, problems)


def _channel_problems(parsed: list[ParsedSeries]) -> list[Problem]:
    """One problem per file whose series have another channel count than the first series."""
    first = next((p for p in parsed if p.series), None)
    if first is None:
        return []
    want = first.series[0].shape[0]
    out = []
    for p in parsed:
        odd = [w for s, w in zip(p.series, p.locations, strict=True) if s.shape[0] != want]
        if odd:
            out.append(
                Problem(
                    p.source,
                    f"{odd[0]} (and {len(odd) - 1} more) has another channel count than "
                    f"{first.locations[0]} of {Path(first.source).name} ({want})",
                )
            )
    return out
