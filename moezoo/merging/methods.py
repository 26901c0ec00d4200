"""Merging task vectors: several single-task fine-tunes of one base model made into one update.

A task vector is a fine-tune's change to its base, ``τ_t = θ_t - θ_0``, as a mapping from parameter (or
layer) name to tensor; for a LoRA fine-tune it is each adapted layer's weight update ``ΔW = s B A``
(`moezoo.merging.task_vectors`). Every method here maps ``N`` task vectors with the same names and shapes
to one merged vector ``τ``; the merged model is ``θ_0 + τ``.

- ``task_arithmetic`` (Ilharco et al. 2023): ``τ = λ Σ_t w_t τ_t``.
- ``ties`` (Yadav et al. 2023): each task vector trimmed to its ``density`` largest magnitudes (over the whole
  vector, as the authors' code does, not tensor by tensor), the sign of each entry elected by the trimmed
  vectors' sum, the entries that agree with it averaged (disjoint mean); ``τ = λ τ_m``.
- ``dare_linear`` / ``dare_ties`` (Yu et al. 2024): each entry of each task vector kept with probability
  ``density`` and rescaled by ``1 / density``, then task arithmetic or TIES' sign election and disjoint mean.
- ``iso_c`` (Marczak et al. 2025, "No Task Left Behind"): per matrix, the sum ``Σ_t τ_t = U Σ Vᵀ`` with its
  spectrum made flat, ``τ = λ σ̄ U Vᵀ`` (``σ̄`` the mean singular value); other tensors averaged.
- ``iso_cts`` (the same paper): per matrix, the top ``common_space_fraction`` of the sum's singular
  directions (the common subspace) and, from each task vector with the common subspace projected out, its
  top directions (an equal share each), orthonormalised together, with a flat spectrum; ``τ = λ σ̄ U Vᵀ``.

Where moezoo deliberately differs from the authors' code: Iso-C and Iso-CTS flatten the spectrum over the
singular values the sum actually has (its numerical rank) rather than over all ``min(m, n)``. For full
fine-tunes the two agree; for a low-rank sum (LoRA updates) the code's way would add ``min(m, n) - rank``
arbitrary directions of the null space at the mean singular value, and moezoo's keeps the merge of LoRA
updates low-rank (rank at most the sources' ranks summed).

Tensors are merged in float32 or wider (their own dtype if wider) and returned in the task vectors' dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from peft.utils.merge_utils import calculate_majority_sign_mask, disjoint_merge
from transformers.utils import logging

from ..suggestions import closest_names

TaskVector = Mapping[str, torch.Tensor]


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _stacked(task_vectors: Sequence[TaskVector], name: str) -> torch.Tensor:
    """Tensor ``name`` of every task vector, stacked on a new first dimension, in the working dtype."""
    first = task_vectors[0][name]
    return torch.stack([vector[name] for vector in task_vectors]).to(_work_dtype(first.dtype))


def _tensors(task_vectors: Sequence[TaskVector]) -> Iterator[tuple[str, torch.Tensor]]:
    """The first task vector's tensors by name, under a progress bar (transformers' switch turns it off)."""
    return iter(logging.tqdm(task_vectors[0].items(), desc="merging", unit="tensor", leave=False))


def _source_weights(weights: Sequence[float] | None, count: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(count, dtype=torch.float64)
    if len(weights) != count:
        raise ValueError(f"weights gives {len(weights)} value(s) for {count} task vectors: give one per task vector.")
    return torch.tensor([float(weight) for weight in weights], dtype=torch.float64)


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density is the share of each task vector's entries kept, in (0, 1], got {density}.")


def task_arithmetic(
    task_vectors: Sequence[TaskVector], scaling: float | None = None, weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """``τ = λ Σ_t w_t τ_t``; ``scaling`` λ defaults to ``1 / N`` (the mean, so that merging ``N`` copies of one
    fine-tune gives it back) and ``weights`` ``w_t`` to 1."""
    scaling = 1.0 / len(task_vectors) if scaling is None else scaling
    factors = _source_weights(weights, len(task_vectors)) * scaling
    merged = {}
    for name, tensor in _tensors(task_vectors):
        stacked = _stacked(task_vectors, name)
        merged[name] = torch.tensordot(factors.to(stacked), stacked, dims=1).to(tensor.dtype)
    return merged


def trim_to_density(task_vector: TaskVector, density: float) -> dict[str, torch.Tensor]:
    """TIES' trim: the ``density`` share of the task vector's entries with the largest magnitudes kept, the rest
    set to zero, over the whole vector (one threshold for all of its tensors, as the authors' code does)."""
    _check_density(density)
    if density == 1.0:
        return dict(task_vector)
    magnitudes = torch.cat([tensor.detach().abs().flatten().to(_work_dtype(tensor.dtype)) for tensor in task_vector.values()])
    keep = max(1, int(round(density * magnitudes.numel())))
    # The keep-th largest magnitude; ties at the threshold are all kept.
    threshold = torch.kthvalue(magnitudes, magnitudes.numel() - keep + 1).values
    return {name: torch.where(tensor.abs() >= threshold, tensor, torch.zeros_like(tensor)) for name, tensor in task_vector.items()}


def drop_and_rescale(task_vector: TaskVector, density: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """DARE's drop: each entry kept with probability ``density`` (draws from ``generator``) and rescaled by
    ``1 / density``, so that the vector's expectation is unchanged."""
    _check_density(density)
    if density == 1.0:
        return dict(task_vector)
    dropped = {}
    for name, tensor in task_vector.items():
        keep = torch.rand(tensor.shape, generator=generator) < density
        dropped[name] = torch.where(keep.to(tensor.device), tensor / density, torch.zeros_like(tensor))
    return dropped


def _elect_and_average(
    task_vectors: Sequence[TaskVector], scaling: float, weights: Sequence[float] | None, majority_sign_method: str
) -> dict[str, torch.Tensor]:
    """TIES' sign election and disjoint mean of (already trimmed or dropped) task vectors, scaled by λ."""
    if majority_sign_method not in ("total", "frequency"):
        raise ValueError(f"majority_sign_method is 'total' or 'frequency', got {majority_sign_method!r}.")
    factors = _source_weights(weights, len(task_vectors))
    merged = {}
    for name, tensor in _tensors(task_vectors):
        stacked = _stacked(task_vectors, name)
        agrees = calculate_majority_sign_mask(stacked, method=majority_sign_method)
        weighted = stacked * factors.to(stacked).view(-1, *([1] * tensor.dim()))
        merged[name] = (scaling * disjoint_merge(weighted, agrees)).to(tensor.dtype)
    return merged


def ties(
    task_vectors: Sequence[TaskVector],
    density: float = 0.2,
    scaling: float = 1.0,
    weights: Sequence[float] | None = None,
    majority_sign_method: str = "total",
) -> dict[str, torch.Tensor]:
    """TIES-merging: trim each task vector to ``density`` (`trim_to_density`; the paper keeps 20 %), elect each
    entry's sign by the trimmed vectors' sum (``"total"``; ``"frequency"``: by the count of signs), and
    average the entries that agree (disjoint mean), weighted by ``weights``; ``τ = λ τ_m``."""
    trimmed = [trim_to_density(vector, density) for vector in task_vectors]
    return _elect_and_average(trimmed, scaling, weights, majority_sign_method)


def dare_linear(
    task_vectors: Sequence[TaskVector],
    density: float = 0.5,
    scaling: float | None = None,
    weights: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """DARE, then task arithmetic: each task vector dropped and rescaled (`drop_and_rescale`, with ``seed``)
    before ``τ = λ Σ_t w_t τ̃_t`` (``scaling`` defaults to ``1 / N``)."""
    generator = torch.Generator().manual_seed(seed)
    dropped = [drop_and_rescale(vector, density, generator) for vector in task_vectors]
    return task_arithmetic(dropped, scaling=scaling, weights=weights)


def dare_ties(
    task_vectors: Sequence[TaskVector],
    density: float = 0.5,
    scaling: float = 1.0,
    weights: Sequence[float] | None = None,
    majority_sign_method: str = "total",
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """DARE, then TIES' sign election and disjoint mean (no magnitude trim: the drop replaces it)."""
    generator = torch.Generator().manual_seed(seed)
    dropped = [drop_and_rescale(vector, density, generator) for vector in task_vectors]
    return _elect_and_average(dropped, scaling, weights, majority_sign_method)


def _numerical_rank(singular_values: torch.Tensor, shape: Sequence[int]) -> int:
    """How many singular values stand above float rounding (NumPy's ``matrix_rank`` tolerance)."""
    if singular_values.numel() == 0 or singular_values[0] <= 0:
        return 0
    tolerance = singular_values[0] * max(shape) * torch.finfo(singular_values.dtype).eps
    return int((singular_values > tolerance).sum())


def _flat_spectrum(left: torch.Tensor, singular_values: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``σ̄ U Vᵀ``: the matrix with the given singular directions and every singular value their mean."""
    return singular_values.mean() * left @ right


def iso_c(task_vectors: Sequence[TaskVector], scaling: float = 1.0) -> dict[str, torch.Tensor]:
    """Iso-C: per 2-D tensor, ``λ σ̄ U Vᵀ`` of the sum ``Σ_t τ_t = U Σ Vᵀ`` over its non-zero singular
    values; every other tensor (biases, norms) the task vectors' mean, times λ."""
    merged = {}
    for name, tensor in _tensors(task_vectors):
        stacked = _stacked(task_vectors, name)
        if tensor.dim() != 2:
            merged[name] = (scaling * stacked.mean(0)).to(tensor.dtype)
            continue
        left, singular_values, right = torch.linalg.svd(stacked.sum(0), full_matrices=False)
        rank = _numerical_rank(singular_values, tensor.shape)
        if rank == 0:
            merged[name] = torch.zeros_like(tensor)
            continue
        flat = _flat_spectrum(left[:, :rank], singular_values[:rank], right[:rank])
        merged[name] = (scaling * flat).to(tensor.dtype)
    return merged


def _orthonormal_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The orthonormal matrix nearest ``matrix`` (its polar factor ``U Vᵀ``)."""
    left, _, right = torch.linalg.svd(matrix, full_matrices=False)
    return left @ right


def iso_cts(
    task_vectors: Sequence[TaskVector], common_space_fraction: float = 0.8, scaling: float = 1.0
) -> dict[str, torch.Tensor]:
    """Iso-CTS: per 2-D tensor of rank ``r`` (its sum's), the common subspace (the sum's top
    ``k = r - N p`` singular directions, ``p = round((r - ⌊fraction r⌋) / N)``) and each task's ``p`` top directions
    once the common subspace is projected out of its vector, together orthonormalised, with every singular
    value their mean; ``τ = λ σ̄ U Vᵀ``. Other tensors are averaged, times λ. A task vector with fewer
    directions than its share contributes those it has."""
    if not 0.0 <= common_space_fraction <= 1.0:
        raise ValueError(f"common_space_fraction is in [0, 1], got {common_space_fraction}.")
    count = len(task_vectors)
    merged = {}
    for name, tensor in _tensors(task_vectors):
        stacked = _stacked(task_vectors, name)
        if tensor.dim() != 2:
            merged[name] = (scaling * stacked.mean(0)).to(tensor.dtype)
            continue
        left, singular_values, right = torch.linalg.svd(stacked.sum(0), full_matrices=False)
        rank = _numerical_rank(singular_values, tensor.shape)
        if rank == 0:
            merged[name] = torch.zeros_like(tensor)
            continue
        # The common subspace takes its fraction of the rank, adjusted (as the authors' code rounds) so that the
        # rest divides equally between the tasks.
        per_task = round((rank - int(rank * common_space_fraction)) / count)
        common = max(0, rank - per_task * count)
        lefts, values, rights = [left[:, :common]], [singular_values[:common]], [right[:common]]
        if per_task:
            projector = left[:, :common] @ left[:, :common].T
            for task in stacked:
                task_left, task_values, task_right = torch.linalg.svd(task - projector @ task, full_matrices=False)
                own = min(per_task, _numerical_rank(task_values, tensor.shape))
                lefts.append(task_left[:, :own])
                values.append(task_values[:own])
                rights.append(task_right[:own])
        flat = _flat_spectrum(
            _orthonormal_factor(torch.cat(lefts, dim=1)), torch.cat(values), _orthonormal_factor(torch.cat(rights, dim=0))
        )
        merged[name] = (scaling * flat).to(tensor.dtype)
    return merged


#: The merging methods by name.
MERGING_METHODS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "task_arithmetic": task_arithmetic,
    "ties": ties,
    "dare_linear": dare_linear,
    "dare_ties": dare_ties,
    "iso_c": iso_c,
    "iso_cts": iso_cts,
}


def check_task_vectors(task_vectors: Sequence[TaskVector]) -> None:
    """Raise a `ValueError` naming the problem unless the task vectors can be merged entry by entry: at
    least one, the same names, and each name the same shape and a finite floating-point tensor."""
    if not task_vectors:
        raise ValueError("Nothing to merge: give at least one task vector.")
    names = list(task_vectors[0])
    for index, vector in enumerate(task_vectors[1:], start=1):
        missing, extra = set(names) - set(vector), set(vector) - set(names)
        if missing or extra:
            raise ValueError(
                f"Task vector {index} does not match task vector 0: it lacks {sorted(missing)[:5]} and has "
                f"{sorted(extra)[:5]} in addition (were they fine-tuned from the same base and adapter layout?)."
            )
        for name in names:
            if vector[name].shape != task_vectors[0][name].shape:
                raise ValueError(
                    f"{name!r} has shape {list(vector[name].shape)} in task vector {index} and "
                    f"{list(task_vectors[0][name].shape)} in task vector 0: the fine-tunes do not share one base."
                )
    for index, vector in enumerate(task_vectors):
        for name, tensor in vector.items():
            if not tensor.is_floating_point():
                raise ValueError(f"{name!r} of task vector {index} is {tensor.dtype}, not a floating-point tensor.")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{name!r} of task vector {index} holds NaN or inf.")


def merge_task_vectors(
    task_vectors: Sequence[TaskVector], method: str, options: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """Merge ``task_vectors`` with the merging method ``method`` (a name of `MERGING_METHODS`) and its
    ``options`` (keyword arguments of that method's function).

    Raises:
        ValueError: an unknown method or option (with the closest names), or task vectors that do not match
            (`check_task_vectors`).
    """
    check_method_options(method, options)
    check_task_vectors(task_vectors)
    with torch.no_grad():
        return MERGING_METHODS[method](task_vectors, **(options or {}))


def check_method_options(method: str, options: Mapping[str, Any] | None) -> None:
    """Raise a `ValueError` naming the closest known names for an unknown method or an option its function does
    not take."""
    if method not in MERGING_METHODS:
        raise ValueError(f"Unknown merging method {method!r}{closest_names(method, MERGING_METHODS)}; choose one of {list(MERGING_METHODS)}.")
    accepted = [name for name in inspect.signature(MERGING_METHODS[method]).parameters if name != "task_vectors"]
    unknown = [name for name in options or {} if name not in accepted]
    if unknown:
        raise ValueError(
            f"Unknown option {unknown[0]!r} for the merging method {method!r}{closest_names(unknown[0], accepted)}; "
            f"it takes {accepted}."
        )
