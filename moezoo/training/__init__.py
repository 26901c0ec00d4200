"""Training and evaluation shared by the recipes."""

from .arguments import parse_config_and_args, require_positive
from .checkpoints import TrainingState, list_checkpoints, prepare_output_dir, resolve_checkpoint
from .data import TensorDataset, make_dataloader, make_eval_dataloader, materialize
from .loop import (
    TrainingConfig,
    TrainingResult,
    config_to_dict,
    evaluate,
    predict,
    prepare_eval_loader,
    save_checkpoint,
    save_training_checkpoint,
    train,
)
from .metrics import is_better, metric_names, multitask_metrics, task_metrics
from .mixing import TaskMixingSampler, concatenate_tasks, task_sampling_probabilities
from .recipe import (
    ModelArguments,
    RecipeResult,
    build_model,
    start_run,
    subsample_splits,
    subset_indices,
    subset_selector,
    train_and_test,
)
from .datasets import DATASETS, RegisteredDataset, get_dataset, run_split

__all__ = [
    "DATASETS",
    "ModelArguments",
    "RecipeResult",
    "RegisteredDataset",
    "TaskMixingSampler",
    "TensorDataset",
    "TrainingConfig",
    "TrainingResult",
    "TrainingState",
    "concatenate_tasks",
    "build_model",
    "config_to_dict",
    "evaluate",
    "get_dataset",
    "is_better",
    "list_checkpoints",
    "make_dataloader",
    "make_eval_dataloader",
    "materialize",
    "metric_names",
    "multitask_metrics",
    "parse_config_and_args",
    "predict",
    "prepare_eval_loader",
    "prepare_output_dir",
    "require_positive",
    "resolve_checkpoint",
    "run_split",
    "save_checkpoint",
    "save_training_checkpoint",
    "start_run",
    "subsample_splits",
    "subset_indices",
    "subset_selector",
    "task_metrics",
    "task_sampling_probabilities",
    "train",
    "train_and_test",
]
