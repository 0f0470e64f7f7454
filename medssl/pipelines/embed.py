"""`medssl embed`: global feature vectors of every scan from a model folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import medssl.modalities  # noqa: F401  (registers the adapters)
from medssl.pipelines.prepare import refuse_problems
from medssl.platform.checkpoint import load_model
from medssl.platform.encoders import encoder_from_architecture
from medssl.platform.errors import CheckpointError
from medssl.platform.io import atomic_write
from medssl.platform.registry import MODALITIES


def embed(checkpoint: str | Path, data: str | Path, out: str | Path) -> Path:
    """Write `features` (N, D), `subject_id` and `image` of every scan in `data` to `out`.

    The data is prepared exactly as the card's preprocessing contract says, so embeddings
    are comparable with those the model was trained on.
    """
    from torch.utils.data import DataLoader

    from medssl.platform.evaluation.features import extract_features

    state, card = load_model(checkpoint)
    modality_name = getattr(card, "modality", "volume")
    if modality_name not in MODALITIES:
        raise CheckpointError(f"{checkpoint}: the card names an unknown modality '{modality_name}'")
    cls = MODALITIES.get(modality_name)
    settings = {k: v for k, v in card.preprocessing.items() if k in cls.Preprocessing.model_fields}
    modality = cls(settings)
    refuse_problems(str(data), modality.validate(data))
    records = modality.scan(data)
    cache = Path(os.environ.get("MEDSSL_CACHE", Path(out).resolve().parent / ".cache"))
    prepared = modality.prepare(records, cache)
    encoder = encoder_from_architecture(card.architecture.model_dump())
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    encoder.load_state_dict(state)
    ds = modality.dataset(prepared, list(range(len(records))), "embed")
    loader = DataLoader(ds, batch_size=8, shuffle=False, collate_fn=modality.collate)
    features, _, _ = extract_features(encoder, loader, progress="embed")
    target = Path(out)
    columns = {
        "features": features,
        "subject_id": np.array([r.subject_id for r in records]),
        "image": np.array([r.image for r in records]),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy adds no `.npz` to the name
            np.savez(f, **columns)

    atomic_write(target, write)
    print(f"{target}: {features.shape[0]} embeddings of dimension {features.shape[1]}")
    return target
