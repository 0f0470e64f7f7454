"""The embedded demo: it says what it compares before training, runs the shipped preset end to
end (shortened here), and ends with a sentence on whether pretraining was ahead of scratch,
in how many paired seeds, that follows the report's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.pipelines.demo import DEMO_PRESET, comparison, demo, verdict
from medssl.pipelines.presets import resolve
from medssl.platform.config import load_config


def _rows(pre: list[float], scratch: list[float]) -> list[dict]:
    def row(init: str, runs: list[float]) -> dict:
        mean = sum(runs) / len(runs)
        std = (sum((v - mean) ** 2 for v in runs) / (len(runs) - 1)) ** 0.5
        return {"stage": "finetune", "init": init, "label_budget": "2", "metric": "mean_dice",
                "value": mean, "std": std, "runs": runs}

    return [row("GR", pre), row("scratch", scratch),
            {"stage": "finetune", "init": "GR", "label_budget": "2", "metric": "dice/liver",
             "value": 0.0}]


def test_verdict_says_ahead_with_the_spread_and_the_paired_seeds() -> None:
    text = verdict(_rows([0.8, 0.7, 0.9], [0.75, 0.72, 0.6]), "GR")
    assert "is ahead of scratch" in text
    assert "0.800 vs 0.690" in text
    assert "± 0.100 and ± 0.079" in text
    assert "ahead in 2 of 3 seeds" in text


def test_verdict_says_not_ahead_when_the_mean_is_behind() -> None:
    text = verdict(_rows([0.6, 0.7, 0.5], [0.75, 0.72, 0.6]), "GR")
    assert "is NOT ahead of scratch" in text
    assert "ahead in 0 of 3 seeds" in text


def test_verdict_without_both_inits_says_so() -> None:
    only_pretrained = _rows([0.6, 0.7], [0.7, 0.8])[:1]
    assert verdict(only_pretrained, "GR") == "No pretrained-vs-scratch mean Dice to compare."


def test_the_shipped_demo_states_its_recipe() -> None:
    config = load_config([resolve(DEMO_PRESET)], ["data.path=x.csv"])
    text = comparison(config)
    assert f"{config.finetune.repeats} seeds" in text
    assert config.pretrain.method["name"] in text
    assert config.finetune.repeats >= 3  # the claim is made over several fine-tuning seeds


@pytest.mark.slow
def test_demo_runs_end_to_end_and_prints_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = ["pretrain.max_steps=3", "pretrain.then.0.max_steps=3", "finetune.max_steps=3",
             "finetune.repeats=2", "finetune.checkpoint_every_n_steps=2",
             "pretrain.checkpoint_every_n_steps=2"]
    report = demo(tmp_path / "demo", subjects=12, overrides=short)
    out = capsys.readouterr().out
    assert out.index("demo: pretrain") < out.index("Dice on held-out phantoms")
    means = {r["init"]: r for r in report["results"] if r["metric"] == "mean_dice"}
    assert set(means) == {load_config([resolve(DEMO_PRESET)], ["data.path=x.csv"])
                          .pretrain.init_label(), "scratch"}
    assert all(len(r["runs"]) == 2 for r in means.values())
    assert verdict(report["results"], next(i for i in means if i != "scratch")) in out
