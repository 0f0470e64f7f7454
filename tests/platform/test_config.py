"""Tests of the pipeline config: stacking YAML files, `key.path=value` overrides, error
messages that name the key path, the config hash, dump/reload, and the shipped presets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from medssl.platform.config import (
    STAGES,
    PipelineConfig,
    PretrainConfig,
    dump_config,
    load_config,
    validate_config,
)
from medssl.platform.errors import ConfigError


def _write(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(overrides: list[str], paths: list[Path] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(paths, overrides)
    return str(info.value)


# ----------------------------------------------------------------------------- stacking


def test_later_file_wins_and_sections_merge_key_by_key(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", {
        "name": "first",
        "stages": ["pretrain", "probe", "report"],
        "data": {"path": "scans.csv", "preprocessing": {"spacing": [1, 1, 1], "intensity": "minmax"}},
        "pretrain": {"lr": 0.1, "batch_size": 4, "method": {"name": "simclr", "temperature": 0.2}},
    })
    second = _write(tmp_path / "b.yaml", {
        "stages": ["pretrain", "report"],
        "data": {"preprocessing": {"spacing": [2, 2, 2]}},
        "pretrain": {"lr": 0.2, "method": {"temperature": 0.5}},
    })
    config = load_config([first, second])
    assert config.name == "first"
    assert config.stages == ["pretrain", "report"]  # lists are replaced, not merged
    assert config.data.path == "scans.csv"
    assert config.data.preprocessing == {"spacing": [2, 2, 2], "intensity": "minmax"}
    assert config.pretrain.lr == 0.2
    assert config.pretrain.batch_size == 4
    assert config.pretrain.method == {"name": "simclr", "temperature": 0.5}
    # The other order: the first file's values win now.
    reverse = load_config([second, first])
    assert reverse.pretrain.lr == 0.1
    assert reverse.data.preprocessing["spacing"] == [1, 1, 1]
    assert reverse.stages == ["pretrain", "probe", "report"]


def test_overrides_apply_after_files_and_parse_as_yaml(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", {"data": {"path": "x.csv", "cache_dir": "cache"},
                                           "pretrain": {"lr": 0.5}})
    config = load_config(base, [
        "finetune.label_budgets=[2, 0.25]",
        "pretrain.lr=0.003",
        "pretrain.max_steps=7",
        "data.cache_dir=null",
        "data.preprocessing.spacing=[1.5, 1.5, 3]",
        "encoder.kwargs.features=[4, 8, 8, 8, 8, 4]",
        "trainer.devices=2",
        "trainer.progress_bar=false",
        "stages=[pretrain, finetune, report]",
        "name=a=b",
    ])
    budgets = config.finetune.label_budgets
    assert budgets == [2, 0.25]
    assert [type(b) for b in budgets] == [int, float]  # 2 counts subjects, 0.25 is a share
    assert config.pretrain.lr == 0.003 and isinstance(config.pretrain.lr, float)
    assert config.pretrain.max_steps == 7
    assert config.data.cache_dir is None
    assert config.data.path == "x.csv"
    assert config.data.preprocessing == {"spacing": [1.5, 1.5, 3]}
    assert config.encoder.kwargs == {"features": [4, 8, 8, 8, 8, 4]}
    assert config.trainer.devices == 2
    assert config.trainer.progress_bar is False
    assert config.stages == ["pretrain", "finetune", "report"]
    assert config.name == "a=b"  # only the first '=' splits key from value


def test_scientific_notation_override_is_a_float() -> None:
    # PyYAML reads "2e-4" as a string; the schema must still end with the number.
    assert load_config(None, ["pretrain.lr=2e-4"]).pretrain.lr == pytest.approx(2e-4)


def test_nested_override_keeps_the_default_around_it() -> None:
    config = load_config(None, ["pretrain.method.temperature=0.2"])
    assert config.pretrain.method == {"name": "simclr", "temperature": 0.2}


def test_base_mapping_is_the_lowest_layer(tmp_path: Path) -> None:
    top = _write(tmp_path / "top.yaml", {"seed": 3})
    config = load_config(top, ["pretrain.epochs=2"], base={"seed": 1, "name": "from-base"})
    assert (config.seed, config.name, config.pretrain.epochs) == (3, "from-base", 2)


@pytest.mark.parametrize("override", ["seed", "=3"])
def test_malformed_override_is_an_error(override: str) -> None:
    assert override in _error([override])


def test_override_into_a_value_names_the_key(tmp_path: Path) -> None:
    seeded = _write(tmp_path / "seeded.yaml", {"seed": 0})
    message = _error(["seed.value=1"], [seeded])
    assert "'seed.value=1'" in message and "seed is a value, not a section" in message
    # Without a file the schema's default is the value overridden into.
    assert "seed is a value, not a section" in _error(["seed.value=1"])


# ----------------------------------------------------------------------------- errors


def test_unknown_key_names_the_path_and_lists_allowed_keys() -> None:
    message = _error(["pretrain.optimiser=adam"])
    line = next(ln for ln in message.splitlines() if "pretrain.optimiser" in ln)
    assert "unknown key" in line
    for key in PretrainConfig.model_fields:
        assert key in line, f"allowed key {key} not listed in: {line}"


def test_unknown_top_level_section_lists_the_sections() -> None:
    message = _error(["trainr.precision=32-true"])
    line = next(ln for ln in message.splitlines() if "trainr" in ln)
    for key in PipelineConfig.model_fields:
        assert key in line


def test_unknown_preprocessing_key_names_its_full_path() -> None:
    from medssl.pipelines.context import build_modality

    config = load_config(None, ["data.path=x.csv", "data.preprocessing.spacin=[1, 1, 1]"])
    with pytest.raises(ConfigError) as info:
        build_modality(config)
    message = str(info.value)
    assert "data.preprocessing.spacin: unknown key" in message
    assert "spacing" in message and "patch_size" in message


def test_every_problem_is_listed_at_once() -> None:
    message = _error(["finetune.task=foo", "pretrain.batch_size=0", "data.colour=red"])
    assert "finetune.task" in message
    assert "pretrain.batch_size" in message
    assert "data.colour" in message


@pytest.mark.parametrize(
    ("override", "path", "bad", "allowed"),
    [
        ("finetune.task=foo", "finetune.task", "'foo'", ["segmentation", "classification"]),
        ("finetune.label_budgets=[0]", "finetune.label_budgets", "0", [">= 1", "(0, 1]"]),
        ("finetune.label_budgets=[4, 1.5]", "finetune.label_budgets", "1.5", ["(0, 1]"]),
        ("probe.label_budgets=[]", "probe.label_budgets", "[]", ["at least one"]),
        ("finetune.inits=[imagenet]", "finetune.inits", "'imagenet'", ["pretrained", "scratch"]),
        ("probe.kinds=[lda]", "probe.kinds", "'lda'", ["linear", "knn", "svm", "forecast"]),
        ("pretrain.batch_size=0", "pretrain.batch_size", "0", ["greater than or equal to 1"]),
        ("data.holdout_fraction=1.5", "data.holdout_fraction", "1.5", ["less than 1"]),
        ("encoder.spatial_dims=4", "encoder.spatial_dims", "4", ["2", "3"]),
        ("pretrain.method={temperature: 0.1}", "pretrain.method", "needs a 'name'", ["simclr"]),
        ("stages=[pretrain, train]", "stages", "'train'", list(STAGES)),
        ("seed=-1", "seed", "-1", ["greater than or equal to 0"]),
    ],
)
def test_bad_value_names_path_value_and_what_is_allowed(
    override: str, path: str, bad: str, allowed: list[str]
) -> None:
    message = _error([override])
    line = next((ln for ln in message.splitlines() if path in ln), None)
    assert line is not None, f"{path} not named in: {message}"
    assert bad in line, f"bad value {bad} not shown in: {line}"
    for hint in allowed:
        assert hint in line, f"{hint!r} not in: {line}"


def test_stages_out_of_order_are_an_error_naming_the_order() -> None:
    message = _error(["stages=[finetune, pretrain]"])
    line = next(ln for ln in message.splitlines() if ln.strip().startswith("stages"))
    assert "finetune" in line and "pretrain" in line
    assert str(list(STAGES)) in line
    assert "twice" in _error(["stages=[pretrain, pretrain]"])


def test_bad_precision_is_refused_at_load() -> None:
    message = _error(["trainer.precision=fp64-fast"])
    assert "trainer.precision" in message and "fp64-fast" in message
    assert "bf16-mixed" in message and "32-true" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "broken.yaml", "name: x\nseed: 0\ndata:\n\tpath: scans.csv\n")
    message = _error([], [bad])
    assert str(bad) in message
    assert "line 4" in message
    unclosed = _write(tmp_path / "unclosed.yaml", "name: x\nstages: [pretrain, report\nseed: 1\n")
    message = _error([], [unclosed])
    assert str(unclosed) in message and "line 3" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    listed = _write(tmp_path / "list.yaml", "- pretrain\n- report\n")
    assert str(listed) in _error([], [listed])


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pipeline.yaml"
    message = _error([], [missing])
    assert str(missing) in message and "not found" in message


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.yaml", "")
    assert load_config(empty) == PipelineConfig()


# ----------------------------------------------------------------------------- hash and dump


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaf_paths(v, prefix + (k,))]
    return [prefix]


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _perturbations(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value / 2] if value else [0.1]  # halving 0.0 would change nothing
    return []


def test_config_hash_is_stable_and_changes_with_every_value() -> None:
    raw = load_config(None, ["data.path=x.csv", "pretrain.max_steps=10"]).to_dict()
    reference = validate_config(raw).config_hash()
    assert validate_config(copy.deepcopy(raw)).config_hash() == reference
    assert len(reference) == 12
    seen = {reference}
    changed = 0
    for path in _leaf_paths(raw):
        current = raw
        for part in path:
            current = current[part]
        for candidate in _perturbations(current):
            try:
                other = validate_config(_set(raw, path, candidate))
            except ConfigError:
                continue
            digest = other.config_hash()
            assert digest != reference, f"changing {'.'.join(path)} kept the hash"
            seen.add(digest)
            changed += 1
            break
    assert changed >= 20  # every numeric and boolean setting was exercised
    for override in ["name=other", "data.path=y.csv", "data.preprocessing.spacing=[1, 1, 1]",
                     "encoder.name=resnet", "pretrain.method={name: simclr, temperature: 0.2}",
                     "finetune.label_budgets=[2]", "stages=[pretrain, report]",
                     "trainer.precision=32-true", "data.cache_dir=c"]:
        digest = load_config(None, ["data.path=x.csv", "pretrain.max_steps=10", override]).config_hash()
        assert digest not in seen, override
        seen.add(digest)


def test_dumped_config_reloads_equal(tmp_path: Path) -> None:
    config = load_config(None, [
        "name=roundtrip", "seed=7", "data.path=some/manifest.csv", "data.num_classes=3",
        "data.preprocessing.spacing=[1.5, 1.5, 2.0]", "data.preprocessing.hu_window=[-200, 300]",
        "encoder.name=unet", "encoder.kwargs.features=[4, 8, 8, 8, 8, 4]",
        "pretrain.method={name: simclr, temperature: 0.07}", "pretrain.max_steps=5",
        "finetune.label_budgets=[1, 0.5, 1.0]", "finetune.roi_size=[32, 32, 16]",
        "trainer.devices=1", "stages=[pretrain, finetune, evaluate, report]",
    ])
    target = tmp_path / "config.yaml"
    dump_config(config, target)
    again = load_config(target)
    assert again == config
    assert again.config_hash() == config.config_hash()
    assert [type(b) for b in again.finetune.label_budgets] == [int, float, float]


# ----------------------------------------------------------------------------- presets


def _presets() -> list[Path]:
    from medssl.pipelines.presets import PRESET_DIR

    return sorted(PRESET_DIR.glob("*.yaml"))


def test_presets_are_shipped() -> None:
    assert len(_presets()) >= 2


@pytest.mark.parametrize("preset", _presets(), ids=lambda p: p.stem)
def test_every_preset_validates(preset: Path) -> None:
    from medssl.pipelines.context import build_modality, check_compatibility, method_class
    from medssl.platform.config import validate_section

    config = load_config(preset, ["data.path=dataset.csv"])
    assert config.name == preset.stem
    first = preset.read_text().splitlines()[0]
    assert first.startswith("#"), "a preset starts with a one-line comment saying what it does"
    build_modality(config)
    check_compatibility(config)
    cls = method_class(config)
    settings = {k: v for k, v in config.pretrain.method.items() if k != "name"}
    validate_section(cls.Config, settings, "pretrain.method")
    if "finetune" in config.stages:  # fine-tuned models are scored only by evaluate
        assert "evaluate" in config.stages


def test_overrides_step_into_lists_of_sections() -> None:
    base = ["pretrain.then=[{method: {name: simclr}, max_steps: 5}]"]
    config = load_config(None, [*base, "pretrain.then.0.max_steps=3"])
    assert config.pretrain.then[0].max_steps == 3
    assert config.pretrain.init_label() == "simclr+simclr"
    with pytest.raises(ConfigError, match=r"pretrain.then is a list of 1; use an index 0..0"):
        load_config(None, [*base, "pretrain.then.1.lr=0.1"])
    with pytest.raises(ConfigError, match=r"pretrain.then.0.method: needs a 'name'"):
        load_config(None, ["pretrain.then=[{method: {temperature: 0.2}}]"])
