"""Training and evaluation shared by the recipes."""

from .arguments import parse_config_and_args
from .loop import TrainingConfig, TrainingResult, evaluate, make_dataloader, predict, save_checkpoint, train
from .metrics import is_better, multitask_metrics, task_metrics

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "evaluate",
    "is_better",
    "make_dataloader",
    "multitask_metrics",
    "parse_config_and_args",
    "predict",
    "save_checkpoint",
    "task_metrics",
    "train",
]
