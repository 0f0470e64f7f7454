"""What a run reads before any stage: the dataset checked (every problem at once), scanned,
cached and split by subject, as the RunContext every stage shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medssl.modalities.base import Problem
from medssl.pipelines.context import RunContext, RunState, build_modality, check_compatibility
from medssl.pipelines.joint import check_joint_probes, joint_folder
from medssl.pipelines.preflight import check_item_sizes
from medssl.pipelines.splits import split_holdout
from medssl.platform.config import PipelineConfig
from medssl.platform.errors import ConfigError, DataError


def validate_data(config: PipelineConfig) -> list[Problem]:
    """Every problem of the configured dataset, without writing anything."""
    if not config.data.path:
        raise ConfigError("data.path: no dataset given; set data.path=FOLDER_OR_MANIFEST")
    if isinstance(config.data.path, list) or config.data.root:
        modality = build_modality(config)
        return [p for path in config.data.paths() for p in modality.validate(path)]
    return build_modality(config).validate(config.data.path)


def refuse_problems(path: str, problems: Sequence[Problem]) -> None:
    if problems:
        listing = "\n".join(str(p) for p in problems)
        raise DataError(
            f"{path}: {len(problems)} problem(s) found; fix them (or remove the files from the "
            f"manifest) and run again:\n{listing}",
            [str(p) for p in problems],
        )


def check_datasets(configs: Sequence[PipelineConfig]) -> None:
    """Before the first of several datasets trains: every dataset's config checks and every
    problem of every dataset, refused at once (a DataError listing each, its file first)."""
    problems: list[Problem] = []
    for config in configs:
        check_compatibility(config)
        check_joint_probes(config)
        problems += validate_data(config)
    if problems:
        listing = "" if len(problems) == 1 else ":\n" + "\n".join(str(p) for p in problems)
        raise DataError(
            f"{problems[0]}; {len(problems)} problem(s) in the datasets of data.path, found "
            f"before any of them was trained; fix or remove them and run again{listing}",
            [str(p) for p in problems],
        )


def prepare_context(config: PipelineConfig, run_dir: Path) -> RunContext:
    check_compatibility(config)
    check_joint_probes(config)
    refuse_problems(str(config.data.path), validate_data(config))
    modality = build_modality(config)
    assert config.data.path is not None
    records = modality.scan(config.data.path)
    cache = Path(config.data.cache_dir) if config.data.cache_dir else run_dir.parent / ".cache"
    prepared = modality.prepare(records, cache)
    check_item_sizes(config, modality, prepared)
    train, holdout = split_holdout(records, config.data.holdout_fraction, config.seed)
    state = RunState.open(run_dir, config.config_hash())
    # A pretrained model's fitted preprocessing (its tokenizer) wins over a fresh fit.
    model = Path(config.pretrain.from_checkpoint or run_dir / "pretrain")
    facts = modality.fit(prepared, train, run_dir, fitted=joint_folder(model))
    return RunContext(config, run_dir, modality, records, prepared, train, holdout, state, facts)
