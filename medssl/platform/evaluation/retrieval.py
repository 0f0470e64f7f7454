"""Scores of paired image-text embeddings: cross-modal retrieval (Recall@K) and zero-shot
classification from class prompts (CLIP-style prompt ensembling). Pure functions on tensors.

Ties count against the query everywhere: a gallery item that scores exactly as high as the
best positive ranks before it, so a collapsed encoder (all scores equal) gets no credit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medssl.platform.evaluation.metrics import ArrayLike, classification_scores
from medssl.platform.losses.infonce import work_dtype


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")


def _positives(positives: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
    queries, gallery = shape
    if positives is None:
        if queries > gallery:
            raise ValueError(
                f"without positives query i matches gallery column i, so the similarity needs "
                f"at least as many columns as rows; got shape {shape}"
            )
        return torch.eye(queries, gallery, dtype=torch.bool)
    positives = torch.as_tensor(positives).cpu()
    if positives.shape != shape or positives.dtype != torch.bool:
        raise ValueError(
            f"positives must be a bool mask of the similarity's shape {shape}, got "
            f"{positives.dtype} {tuple(positives.shape)}"
        )
    missing = (~positives.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"every query needs at least one positive; query rows {missing} have none")
    return positives


def positive_ranks(similarity: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each query's best positive: 1 + the number of non-positive gallery
    items scoring at least as high as it (ties count against the query).

    Example:
        >>> positive_ranks(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))
        tensor([1, 2])
    """
    sim = torch.as_tensor(similarity).detach().cpu()
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(
            f"similarity must be a non-empty (queries, gallery) matrix, got {tuple(sim.shape)}"
        )
    if torch.isnan(sim).any():
        raise ValueError("similarity holds NaN; ranks would be meaningless")
    shape = (sim.shape[0], sim.shape[1])
    pos = _positives(positives, shape)
    best = sim.masked_fill(~pos, float("-inf")).amax(dim=1, keepdim=True)
    return 1 + ((sim >= best) & ~pos).sum(dim=1)


@torch.no_grad()
def recall_at_k(
    similarity: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    positives: torch.Tensor | None = None,
) -> dict[int, float]:
    """Recall@K: the fraction of queries with a positive among their K top-scoring items.

    Args:
        similarity: (Q, G) scores; rows are queries, columns gallery items, higher is closer.
        ks: the K to report, each >= 1. A K above the gallery size G is clamped to G (every
            query then counts as hit); the result is still keyed by the K asked for.
        positives: (Q, G) bool, True where the item is a positive of the query (several are
            allowed; every query needs one). Default: query i's positive is column i.

    Ties count against the query: the rank of its best positive is 1 + the number of
    non-positive items scoring at least as high (see `positive_ranks`).

    Returns:
        {K: recall in [0, 1]} in the order of `ks`.

    Example:
        >>> sim = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.5, 0.2], [0.1, 0.7, 0.4]])
        >>> recall_at_k(sim, ks=(1, 2))
        {1: 0.3333333333333333, 2: 1.0}
    """
    _check_ks(ks)
    ranks = positive_ranks(similarity, positives)
    gallery = torch.as_tensor(similarity).shape[1]
    return {k: float((ranks <= min(k, gallery)).double().mean()) for k in ks}


def _unit(embeddings: torch.Tensor, name: str) -> torch.Tensor:
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(embeddings.shape)}")
    return F.normalize(embeddings.detach().to(work_dtype(embeddings)), dim=1)


@torch.no_grad()
def retrieval_scores(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    positives: torch.Tensor | None = None,
) -> dict[str, float]:
    """Recall@K of image-to-report and report-to-image retrieval by cosine similarity.

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (N, D) report embeddings, row i the report of image i.
        ks: the K to report (clamped to N as in `recall_at_k`).
        positives: (N, N) bool, True where report j also matches image i (e.g. identical
            reports); default the pair's own report only. Its transpose serves text->image.

    Returns:
        {"R@K image->text": ..., "R@K text->image": ...} for each K, image->text first.

    Example:
        >>> emb = torch.eye(3)
        >>> retrieval_scores(emb, emb, ks=(1,))
        {'R@1 image->text': 1.0, 'R@1 text->image': 1.0}
    """
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb and text_emb must be paired (N, D) with equal shapes, got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    sim = _unit(image_emb, "image_emb") @ _unit(text_emb, "text_emb").T
    transposed = None if positives is None else torch.as_tensor(positives).T
    image_to_text = recall_at_k(sim, ks, positives)
    text_to_image = recall_at_k(sim.T, ks, transposed)
    scores = {f"R@{k} image->text": v for k, v in image_to_text.items()}
    scores.update({f"R@{k} text->image": v for k, v in text_to_image.items()})
    return scores


@torch.no_grad()
def ensemble_prompts(prompt_emb_by_class: Sequence[torch.Tensor]) -> torch.Tensor:
    """One unit embedding per class: its prompt embeddings normalised, averaged and
    renormalised (the prompt ensembling of CLIP, Radford et al., 2021).

    Args:
        prompt_emb_by_class: K tensors, class k's (n_prompts_k, D) prompt embeddings.

    Returns:
        (K, D) class embeddings.

    Example:
        >>> ensemble_prompts([torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([[0.0, 2.0]])])
        tensor([[1., 0.],
                [0., 1.]])
    """
    if len(prompt_emb_by_class) < 2:
        raise ValueError(f"zero-shot needs at least 2 classes, got {len(prompt_emb_by_class)}")
    dims = {p.shape[1] if p.ndim == 2 else -1 for p in prompt_emb_by_class}
    if len(dims) != 1 or -1 in dims or any(p.shape[0] == 0 for p in prompt_emb_by_class):
        shapes = [tuple(p.shape) for p in prompt_emb_by_class]
        raise ValueError(f"each class needs (n_prompts >= 1, D) prompt embeddings, got {shapes}")
    means = [_unit(p, "prompts").mean(dim=0) for p in prompt_emb_by_class]
    return F.normalize(torch.stack(means), dim=1)


@torch.no_grad()
def zero_shot_probabilities(
    image_emb: torch.Tensor,
    prompt_emb_by_class: Sequence[torch.Tensor],
    temperature: float = 0.1,
) -> torch.Tensor:
    """Class probabilities softmax_k(cos(image, class_k) / tau) with the class embeddings of
    `ensemble_prompts`.

    Args:
        image_emb: (N, D) image embeddings.
        prompt_emb_by_class: K tensors of (n_prompts_k, D) prompt embeddings, class k first.
        temperature: tau > 0; pass the one the model was trained with. The arg-max, and the
            AUROC of two classes, do not depend on it.

    Returns:
        (N, K) probabilities, float32 (float64 for float64 input).

    Example:
        >>> prompts = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
        >>> zero_shot_probabilities(torch.tensor([[2.0, 0.0]]), prompts, temperature=1.0)
        tensor([[0.7311, 0.2689]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    classes = ensemble_prompts(prompt_emb_by_class)
    images = _unit(image_emb, "image_emb")
    if images.shape[1] != classes.shape[1]:
        raise ValueError(
            f"image_emb has D = {images.shape[1]} but the prompts D = {classes.shape[1]}"
        )
    return torch.softmax(images @ classes.to(images).T / temperature, dim=1)


def zero_shot_scores(
    image_emb: torch.Tensor,
    prompt_emb_by_class: Sequence[torch.Tensor],
    labels: ArrayLike,
    temperature: float = 0.1,
) -> dict[str, float]:
    """Zero-shot classification scores: the predicted class is the prompt ensemble with the
    highest cosine to the image.

    AUROC is computed from `zero_shot_probabilities`: with two classes from p(class 1), a
    monotone function of cos(image, class 1) - cos(image, class 0), so free of the
    temperature; with more, the one-vs-rest macro average of `metrics.auroc`.

    Args:
        image_emb: (N, D) image embeddings.
        prompt_emb_by_class: K tensors of (n_prompts_k, D) prompt embeddings, class k first.
        labels: (N,) true class index of each image, in [0, K).
        temperature: tau > 0 of the softmax (see `zero_shot_probabilities`).

    Returns:
        {"auroc", "accuracy", "balanced_accuracy"} (`metrics.classification_scores`).

    Example:
        >>> prompts = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
        >>> images = torch.tensor([[1.0, 0.1], [0.2, 1.0], [1.0, 0.5]])
        >>> zero_shot_scores(images, prompts, [0, 1, 1])["accuracy"]
        0.6666666666666666
    """
    probabilities = zero_shot_probabilities(image_emb, prompt_emb_by_class, temperature)
    y = np.asarray(labels).reshape(-1)
    n, k = probabilities.shape
    if y.shape[0] != n or (y.size and (y.min() < 0 or y.max() >= k)):
        found = f"range [{y.min()}, {y.max()}]" if y.size else "none"
        raise ValueError(
            f"labels must be {n} class indices in [0, {k}), got {y.shape[0]} labels, {found}"
        )
    return classification_scores(y, probabilities.cpu().double().numpy())
