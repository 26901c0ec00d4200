"""Publishing moezoo models: model cards and their figures."""

from .cards import CardDetails, DatasetDescription, build_model_card, eval_results, task_parameter_counts
from .datasets import (
    CENSUS_INCOME_DESCRIPTION,
    MULTI_FASHION_MNIST_DESCRIPTION,
    MULTI_MNIST_DESCRIPTION,
    describe_glue,
    describe_multi_mnist,
)
from .figures import format_unit_label, measure_gate_weights, plot_gate_weights

__all__ = [
    "CENSUS_INCOME_DESCRIPTION",
    "CardDetails",
    "DatasetDescription",
    "MULTI_FASHION_MNIST_DESCRIPTION",
    "MULTI_MNIST_DESCRIPTION",
    "build_model_card",
    "describe_glue",
    "describe_multi_mnist",
    "eval_results",
    "format_unit_label",
    "measure_gate_weights",
    "plot_gate_weights",
    "task_parameter_counts",
]
