"""Progress lines: the rate-limited printer's cadence on a fake clock, `tracked` over lists and
map-style datasets, `counting` off a terminal, and a Lightning fit's step lines."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from medssl.platform.config import TrainerConfig
from medssl.platform.engine import progress as progress_module
from medssl.platform.engine.progress import ProgressLine, counting, duration, tracked
from medssl.platform.engine.supervised import SupervisedModule
from medssl.platform.engine.trainer import build_trainer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_every_period_and_the_last_item_always() -> None:
    clock, lines = FakeClock(), []
    progress = ProgressLine("finetune", 20, unit="step", every=5, clock=clock, write=lines.append)
    for step in range(1, 21):
        clock.now += 1.0  # one second per step
        progress.update(step, f"loss {1 / step:.2f}")
    assert [line.split(" loss")[0] for line in lines] == [
        "[finetune] step 5/20", "[finetune] step 10/20", "[finetune] step 15/20",
        "[finetune] step 20/20",
    ]
    assert lines[0] == "[finetune] step 5/20 loss 0.20 (5.0s, ~15.0s left)"
    assert lines[-1] == "[finetune] step 20/20 loss 0.05 (20.0s)"  # done: no time left


def test_items_slower_than_the_period_allows_are_each_reported() -> None:
    """At 4 s an item, waiting for 5 s since the last line would leave 8 s silent: every item
    is reported, so no silence lasts much over the period."""
    clock, lines = FakeClock(), []
    progress = ProgressLine("finetune", 4, unit="step", every=5, clock=clock, write=lines.append)
    for step in range(1, 5):
        clock.now += 4.0
        progress.update(step)
    assert lines == [
        "[finetune] step 1/4 (4.0s, ~12.0s left)", "[finetune] step 2/4 (8.0s, ~8.0s left)",
        "[finetune] step 3/4 (12.0s, ~4.0s left)", "[finetune] step 4/4 (16.0s)",
    ]


def test_a_loop_shorter_than_the_period_prints_nothing() -> None:
    clock, lines = FakeClock(), []
    progress = ProgressLine("evaluate", 3, every=5, clock=clock, write=lines.append)
    for _ in range(3):
        clock.now += 1.0
        progress.advance()
    assert lines == []


def test_time_left_of_a_resumed_loop_counts_only_its_own_items() -> None:
    clock, lines = FakeClock(), []
    progress = ProgressLine("fit", 100, unit="step", every=0, start=90, clock=clock, write=lines.append)
    clock.now += 20.0
    progress.update(95)  # 5 steps in 20 s: 4 s a step, 5 left
    assert lines == ["[fit] step 95/100 (20.0s, ~20.0s left)"]


def test_slow_items_each_get_a_line_with_a_long_time_left() -> None:
    clock, lines = FakeClock(), []
    progress = ProgressLine("cache", 4, unit="volume", clock=clock, write=lines.append)
    clock.now += 70.0
    progress.advance()
    assert lines == ["[cache] volume 1/4 (1m10s, ~3m30s left)"]


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"total": 0}, "total must be >= 1"), ({"total": 3, "every": -1}, "every")]
)
def test_bad_arguments_raise(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProgressLine("x", **kwargs)  # type: ignore[arg-type]


def test_duration_reads_as_seconds_then_minutes() -> None:
    assert [duration(s) for s in (0.04, 59.94, 60, 3599)] == ["0.0s", "59.9s", "1m00s", "59m59s"]


class Squares(Dataset):
    """Map-style: `__getitem__` without `__iter__` or an IndexError at its end."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, k: int) -> int:
        return k * k


def test_tracked_reads_a_map_style_dataset_by_index_and_reports(monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    assert list(tracked(Squares(), "squares", unit="item")) == [0, 1, 4]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "[squares] item 1/3", "[squares] item 2/3", "[squares] item 3/3"
    ]


def test_counting_off_a_terminal_prints_lines(monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    with counting("preparing volumes", 2, unit="volume", bar_from=4) as advance:
        advance()
        advance()
    assert "[preparing volumes] volume 2/2" in capsys.readouterr().out


def test_a_short_fit_prints_its_steps_with_loss_and_time_left(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Off a terminal (pytest captures), the fit reports steps done of the total; a fit of
    several epochs also ends every epoch with an `epoch k/N` line."""
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    L.seed_everything(0, verbose=False)
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    loader = DataLoader(data, batch_size=2, collate_fn=lambda b: {
        "x": torch.stack([x for x, _ in b]), "label": torch.stack([y for _, y in b])
    })
    module = SupervisedModule(nn.Linear(4, 2), nn.functional.cross_entropy, total_steps=6)
    trainer = build_trainer(
        TrainerConfig(accelerator="cpu"), root_dir=tmp_path, label="finetune tiny",
        max_epochs=2, max_steps=6,
    )
    trainer.fit(module, loader)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    pattern = r"\[finetune tiny\] (epoch \d/2 )?step (\d)/6 loss \d\.\d{4} \(\d+\.\ds(, ~.* left)?\)"
    assert lines and all(re.fullmatch(pattern, line) for line in lines), lines
    steps = [int(re.fullmatch(pattern, line).group(2)) for line in lines]  # type: ignore[union-attr]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert lines[3].startswith("[finetune tiny] epoch 1/2 step 4/6")
    assert lines[-1].startswith("[finetune tiny] epoch 2/2 step 6/6")
    assert "left" in lines[0] and "left" not in lines[-1]
