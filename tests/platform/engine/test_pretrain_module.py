"""The pretraining module advances a batch sampler's epoch (Lightning only does that for a
loader's `sampler`), so samplers that draw whole batches give each epoch new batches."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from medssl.platform.batch import collate_items
from medssl.platform.engine.pretrain import PretrainModule
from medssl.platform.methods.base import Method


class _Recording(torch.utils.data.Sampler):
    """Yields two batches per epoch and records the epochs it was told about."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([[0, 1], [2, 3]])

    def __len__(self) -> int:
        return 2


class _Mean(Method):
    def __init__(self) -> None:
        super().__init__(encoder=torch.nn.Linear(1, 1))  # type: ignore[arg-type]

    def forward(self, batch):  # type: ignore[no-untyped-def]
        return {"loss": self.encoder(batch["x"]).mean()}


def test_batch_sampler_epoch_advances(tmp_path: Path) -> None:
    sampler = _Recording()
    items = [{"x": torch.ones(1) * i} for i in range(4)]
    loader = DataLoader(items, batch_sampler=sampler, collate_fn=collate_items)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(PretrainModule(_Mean(), lr=0.01, weight_decay=0.0, total_steps=6), loader)
    assert sampler.epochs == [0, 1, 2]
