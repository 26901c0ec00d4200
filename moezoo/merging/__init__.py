"""Model merging: single-task fine-tunes of one base made into one multi-task model (task arithmetic, TIES,
DARE, isotropic merging)."""

from .methods import (
    MERGING_METHODS,
    check_task_vectors,
    dare_linear,
    dare_ties,
    drop_and_rescale,
    iso_c,
    iso_cts,
    merge_task_vectors,
    task_arithmetic,
    ties,
    trim_to_density,
)

__all__ = [
    "MERGING_METHODS",
    "check_task_vectors",
    "dare_linear",
    "dare_ties",
    "drop_and_rescale",
    "iso_c",
    "iso_cts",
    "merge_task_vectors",
    "task_arithmetic",
    "ties",
    "trim_to_density",
]
