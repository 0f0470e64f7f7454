"""Image-text (and image-report-ECG) contrastive losses: ConVIRT, MoRE and GLoRIA's local term,
each written as masks over the ONE masked log-sum-exp of `masked_info_nce`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medssl.platform.engine.distributed import gather_no_grad, gather_with_grad, rank
from medssl.platform.losses.infonce import masked_info_nce, work_dtype


def _check_temperature(temperature: float, name: str = "temperature") -> None:
    if not temperature > 0:
        raise ValueError(f"{name} must be > 0, got {temperature}")


def _check_pairs(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """Every tensor is (B, D) with the same B and D."""
    first = tensors[0]
    if any(t.ndim != 2 or t.shape != first.shape for t in tensors):
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors, strict=True))
        raise ValueError(f"{', '.join(names)} must all be (B, D) with equal shapes, got {shapes}")


def _check_keys(names: Sequence[str], keys: Sequence[torch.Tensor], dim: int) -> None:
    """Gathered keys are (G, D) with the same G and the embedding size D of the queries."""
    first = keys[0]
    if any(k.ndim != 2 or k.shape != first.shape or k.shape[1] != dim for k in keys):
        shapes = ", ".join(f"{n} {tuple(k.shape)}" for n, k in zip(names, keys, strict=True))
        raise ValueError(f"gathered keys must all be (G, {dim}), got {shapes}")


def _offset(offset: int | None, batch: int, keys: int) -> int:
    offset = rank() * batch if offset is None else offset
    if offset < 0 or offset + batch > keys:
        raise ValueError(f"offset {offset} + batch size {batch} exceeds the {keys} gathered keys")
    return offset


def _one_way(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float,
    offset: int,
    query_present: torch.Tensor | None = None,
    key_present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE of queries (B, D) against the other modality's keys (G, D): query i's
    positive is key offset + i, every other key a negative. Absent queries anchor nothing;
    absent keys are neither positive nor negative."""
    work = work_dtype(queries)
    sim = F.normalize(queries.to(work), dim=1) @ F.normalize(keys.to(work), dim=1).T
    rows = torch.arange(queries.shape[0], device=queries.device)
    positive = torch.zeros(sim.shape, dtype=torch.bool, device=queries.device)
    positive[rows, offset + rows] = True
    eligible = torch.ones_like(positive)
    if query_present is not None and key_present is not None:
        eligible = query_present[:, None] & key_present[None, :]
        positive &= eligible
    return masked_info_nce(sim / temperature, positive, eligible)


def _presence(name: str, mask: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if mask.shape != (n,) or mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a ({n},) bool mask, got {mask.dtype} {tuple(mask.shape)}")
    return mask


def convirt_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    temperature: float = 0.1,
    image_weight: float = 0.75,
    *,
    gathered: tuple[torch.Tensor, torch.Tensor] | None = None,
    offset: int | None = None,
) -> torch.Tensor:
    """ConVIRT loss (Zhang et al., 2022, "Contrastive Learning of Medical Visual
    Representations from Paired Images and Text").

    With s(v, u) = cos(v, u) / tau for image v and text u of B pairs:
        l(v_i->u) = -s(v_i, u_i) + log sum_k exp s(v_i, u_k)   (text keys; l(u_i->v) likewise),
        loss = lambda * mean_i l(v_i->u) + (1 - lambda) * mean_i l(u_i->v).

    Args:
        image: (B, D) image embeddings v (normalised here).
        text: (B, D) text embeddings u, row i the report of image i.
        temperature: tau > 0 (the paper uses 0.1).
        image_weight: lambda in [0, 1], weight of the image-to-text direction (paper: 0.75).
        gathered: keys (image_keys, text_keys), each (G, D), from all ranks in rank order.
            Default: image and text gathered across ranks with gradients (just the local
            batch in a single process).
        offset: global index of this rank's first pair among the G keys; default rank() * B.

    Returns:
        A scalar loss (float32; float64 for float64 input).

    Example:
        >>> v, u = torch.randn(4, 8), torch.randn(4, 8)
        >>> float(convirt_loss(v, v)) < float(convirt_loss(v, u))
        True
    """
    _check_temperature(temperature)
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_weight must be in [0, 1], got {image_weight}")
    _check_pairs(("image", "text"), (image, text))
    if gathered is None:
        gathered = (gather_with_grad(image), gather_with_grad(text))
    image_keys, text_keys = gathered
    _check_keys(("image_keys", "text_keys"), gathered, image.shape[1])
    start = _offset(offset, image.shape[0], image_keys.shape[0])
    image_to_text = _one_way(image, text_keys, temperature, start)
    text_to_image = _one_way(text, image_keys, temperature, start)
    return image_weight * image_to_text + (1.0 - image_weight) * text_to_image


def _more_keys(
    local: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    present: torch.Tensor,
    gathered: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    gathered_present: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Text, image and ECG keys of all ranks, and the ECG presence of each key (absent ECG
    keys zeroed)."""
    if gathered is None:
        gathered = (
            gather_with_grad(local[0]),
            gather_with_grad(local[1]),
            gather_with_grad(local[2]),
        )
        if gathered_present is None:
            # uint8: not every backend gathers bool tensors.
            gathered_present = gather_no_grad(present.to(torch.uint8)).bool()
    text_keys, image_keys, ecg_keys = gathered
    _check_keys(("text_keys", "image_keys", "ecg_keys"), gathered, local[0].shape[1])
    key_present = _presence(
        "gathered_ecg_present", gathered_present, text_keys.shape[0], present.device
    )
    ecg_keys = ecg_keys.masked_fill(~key_present[:, None], 0.0)
    return text_keys, image_keys, ecg_keys, key_present


def more_loss(
    text: torch.Tensor,
    image: torch.Tensor,
    ecg: torch.Tensor,
    temperature: float = 0.1,
    *,
    ecg_present: torch.Tensor | None = None,
    gathered: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    gathered_ecg_present: torch.Tensor | None = None,
    offset: int | None = None,
) -> torch.Tensor:
    """MoRE loss (Thapa et al., 2024, "MoRE: Multi-Modal Contrastive Pre-training with
    Transformers on X-Rays, ECGs, and Diagnostic Report"): the report is the anchor.

    With S(a, b) = (mean_i l(a_i->b) + mean_i l(b_i->a)) / 2 the symmetric InfoNCE of
    :func:`convirt_loss` (lambda = 0.5):
        loss = (S(text, image) + S(text, ecg)) / 2;   there is no image-ECG term.
    The ECG term runs over the rows with an ECG only: rows without one neither anchor nor
    serve as keys in it. When no local row has an ECG the loss is S(text, image) alone.

    Args:
        text: (B, D) report embeddings (normalised here).
        image: (B, D) image embeddings, row i paired with report i.
        ecg: (B, D) ECG embeddings; rows without an ECG may hold anything (a zero
            placeholder, even NaN): they are zeroed before use and get no gradient.
        temperature: tau > 0, shared by both terms.
        ecg_present: (B,) bool, True where the row has an ECG; default all True.
        gathered: keys (text_keys, image_keys, ecg_keys), each (G, D), from all ranks in rank
            order. Default: each modality gathered across ranks with gradients.
        gathered_ecg_present: (G,) bool presence of the ECG keys; needed with `gathered` and
            `ecg_present`. Default: `ecg_present` gathered across ranks (all True if that is
            None too).
        offset: global index of this rank's first row among the G keys; default rank() * B.

    Returns:
        A scalar loss (float32; float64 for float64 input). Under DDP each rank averages the
        ECG term over its own rows with an ECG.

    Example:
        >>> t, v, e = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
        >>> present = torch.tensor([True, False, True, True])
        >>> more_loss(t, v, e, ecg_present=present).shape
        torch.Size([])
    """
    _check_temperature(temperature)
    _check_pairs(("text", "image", "ecg"), (text, image, ecg))
    if gathered is not None and ecg_present is not None and gathered_ecg_present is None:
        raise ValueError(
            "with gathered keys and ecg_present, pass gathered_ecg_present too: the presence "
            "of each of the G gathered ECG keys"
        )
    batch = text.shape[0]
    present = _presence("ecg_present", ecg_present, batch, text.device)
    ecg = ecg.masked_fill(~present[:, None], 0.0)
    text_keys, image_keys, ecg_keys, key_present = _more_keys(
        (text, image, ecg), present, gathered, gathered_ecg_present
    )
    start = _offset(offset, batch, text_keys.shape[0])
    text_image = 0.5 * (
        _one_way(text, image_keys, temperature, start)
        + _one_way(image, text_keys, temperature, start)
    )
    text_ecg = 0.5 * (
        _one_way(text, ecg_keys, temperature, start, present, key_present)
        + _one_way(ecg, text_keys, temperature, start, present, key_present)
    )
    # torch.where instead of a Python branch: no host synchronisation on GPU.
    return torch.where(present.any(), 0.5 * (text_image + text_ecg), text_image)


def _check_local_inputs(
    words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor
) -> None:
    if (
        words.ndim != 3
        or regions.ndim != 3
        or words.shape[0] != regions.shape[0]
        or (words.shape[2] != regions.shape[2])
    ):
        raise ValueError(
            f"words (B, L, D) and regions (B, R, D) must share B and D, got "
            f"{tuple(words.shape)} and {tuple(regions.shape)}"
        )
    if word_mask.shape != words.shape[:2] or word_mask.dtype != torch.bool:
        raise ValueError(
            f"word_mask must be a bool mask of shape {tuple(words.shape[:2])}, got "
            f"{word_mask.dtype} {tuple(word_mask.shape)}"
        )


def _report_image_scores(
    words: torch.Tensor,
    word_mask: torch.Tensor,
    regions: torch.Tensor,
    tau1: float,
    tau2: float,
) -> torch.Tensor:
    """GLoRIA's Z(i, j) for every image i and report j: (B, B)."""
    work = work_dtype(words)
    # A report without words would give log(0): it gets a dummy mask here and is masked out
    # of the loss by the caller.
    used = word_mask | ~word_mask.any(dim=1, keepdim=True)
    words = words.to(work).masked_fill(~word_mask[..., None], 0.0)
    regions = regions.to(work)
    unit_words = F.normalize(words, dim=-1)
    cos = torch.einsum("jld,ird->ijlr", unit_words, F.normalize(regions, dim=-1))
    attention = torch.softmax(tau1 * cos, dim=-1)
    context = torch.einsum("ijlr,ird->ijld", attention, regions)
    score = (F.normalize(context, dim=-1) * unit_words[None]).sum(dim=-1)
    score = (tau2 * score).masked_fill(~used[None], float("-inf"))
    return torch.logsumexp(score, dim=-1) / tau2


def gloria_local_loss(
    words: torch.Tensor,
    word_mask: torch.Tensor,
    regions: torch.Tensor,
    temperatures: tuple[float, float, float] = (4.0, 5.0, 10.0),
) -> torch.Tensor:
    """Local loss of GLoRIA (Huang et al., ICCV 2021, "GLoRIA: A Multimodal Global-Local
    Representation Learning Framework for Label-efficient Medical Image Recognition").

    For image i and report j, each word w of j attends over the regions r of i:
        a_r = softmax_r(tau1 cos(w, r)),  c_w = sum_r a_r r,  Z(i, j) = (1/tau2) log
        sum_w exp(tau2 cos(w, c_w));
    the loss is the mean of the image->report and report->image cross-entropies of the B x B
    logits tau3 Z (positive: the pair's own report / image). The global term of GLoRIA is
    ``convirt_loss(image, text, 1 / tau3, 0.5)``.

    Contrasts the local batch only (no gathering across ranks): the attention is computed for
    every (image, report) pair, so time and memory are O(B^2 L (R + D)).

    Args:
        words: (B, L, D) word embeddings of the reports (padded to L).
        word_mask: (B, L) bool, True for real words; padding may hold anything (even NaN).
            A report without any word is left out of both directions with its image.
        regions: (B, R, D) local image features (e.g. the 19 x 19 = 361 cells of a CNN map).
            Attention uses their cosine; the context c_w sums them as given, as in GLoRIA.
        temperatures: (tau1, tau2, tau3), each > 0 (the paper: 4, 5, 10).

    Returns:
        A scalar loss (float32; float64 for float64 input).

    Example:
        >>> words, regions = torch.randn(3, 5, 8), torch.randn(3, 6, 8)
        >>> mask = torch.ones(3, 5, dtype=torch.bool)
        >>> gloria_local_loss(words, mask, regions).shape
        torch.Size([])
    """
    if len(temperatures) != 3:
        raise ValueError(f"temperatures must be (tau1, tau2, tau3), got {temperatures}")
    for name, tau in zip(("tau1", "tau2", "tau3"), temperatures, strict=True):
        _check_temperature(tau, f"temperatures {tuple(temperatures)}: {name}")
    tau1, tau2, tau3 = temperatures
    _check_local_inputs(words, word_mask, regions)
    has_words = word_mask.any(dim=1)
    logits = tau3 * _report_image_scores(words, word_mask, regions, tau1, tau2)
    eligible = has_words[:, None] & has_words[None, :]
    positive = torch.eye(len(has_words), dtype=torch.bool, device=words.device) & eligible
    image_to_report = masked_info_nce(logits, positive, eligible)
    report_to_image = masked_info_nce(logits.T, positive.T, eligible.T)
    return 0.5 * (image_to_report + report_to_image)
