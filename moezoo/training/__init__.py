"""Training and evaluation shared by the recipes."""

from .arguments import parse_config_and_args
from .loop import (
    TrainingConfig,
    TrainingResult,
    config_to_dict,
    evaluate,
    make_dataloader,
    predict,
    save_checkpoint,
    train,
)
from .metrics import is_better, multitask_metrics, task_metrics
from .recipe import ModelArguments, RecipeResult, start_run, subsample_splits, train_and_test

__all__ = [
    "ModelArguments",
    "RecipeResult",
    "TrainingConfig",
    "TrainingResult",
    "config_to_dict",
    "evaluate",
    "is_better",
    "make_dataloader",
    "multitask_metrics",
    "parse_config_and_args",
    "predict",
    "save_checkpoint",
    "start_run",
    "subsample_splits",
    "task_metrics",
    "train",
    "train_and_test",
]
