"""Preset names on the command line: a shipped preset is found by its name, a file by its path,
and a folder that happens to carry a preset's name (a run folder) does not hide the preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.pipelines.presets import PRESET_DIR, resolve


def test_a_name_resolves_to_the_shipped_preset_even_beside_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve("ucr-ts2vec") == PRESET_DIR / "ucr-ts2vec.yaml"
    (tmp_path / "ucr-ts2vec").mkdir()  # e.g. the folder of an earlier `--out ucr-ts2vec`
    assert resolve("ucr-ts2vec") == PRESET_DIR / "ucr-ts2vec.yaml"


def test_a_file_wins_over_a_preset_and_unknown_names_stay_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "ucr-ts2vec"
    mine.write_text("name: mine\n")
    assert resolve("ucr-ts2vec") == Path("ucr-ts2vec")
    assert resolve("no-such-preset") == Path("no-such-preset")
