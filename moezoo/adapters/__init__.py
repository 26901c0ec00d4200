"""Multi-task adapters for pretrained transformers (work in progress: the task routing they share)."""

from .task_routing import TaskRouting

__all__ = ["TaskRouting"]
