"""Publishing moezoo models: model cards and their figures."""

from .cards import CardDetails, DatasetDescription, build_model_card, eval_results, task_parameter_counts
from .datasets import RECIPE_DATASETS, describe_dataset
from .figures import format_unit_label, measure_gate_weights, plot_gate_weights

__all__ = [
    "CardDetails",
    "DatasetDescription",
    "RECIPE_DATASETS",
    "build_model_card",
    "describe_dataset",
    "eval_results",
    "format_unit_label",
    "measure_gate_weights",
    "plot_gate_weights",
    "task_parameter_counts",
]
