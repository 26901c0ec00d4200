"""Per-example task ids for the adapter layers inside a pretrained transformer.

An adapter layer injected into a BERT or a GPT-2 cannot receive ``task_ids`` through the base model's
forward signature. `TaskRouting` holds the ids of the current batch, and a persistent forward pre-hook
on every adapted layer passes them to it as the keyword ``task_ids``. Because the hooks and the ids stay
in place after the call returns, they are still there when gradient checkpointing recomputes a block
during backward (PEFT's Poly registers its hooks for the duration of the call only, so recomputation
finds none), and at every step of ``generate()``, whose beam search and ``num_return_sequences`` repeat
each example in place: the ids are repeated to match. One mechanism serves every multi-task adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..tasks import check_task_ids


class TaskRouting:
    """The task ids of the batch being computed, handed to every adapted layer.

    Args:
        num_tasks: How many tasks the adapters know; ids are checked against it.

    Example::

        routing = TaskRouting(num_tasks=3)
        routing.attach(peft_model, (peft.tuners.poly.layer.Linear,))
        routing.set(task_ids)  # before each forward (or generate)
        output = peft_model(**inputs)
    """

    def __init__(self, num_tasks: int) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}.")
        self.num_tasks = num_tasks
        self._task_ids: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []

    def attach(self, model: nn.Module, layer_types: type | tuple[type, ...]) -> list[str]:
        """Hand the ids to every module of ``model`` that is a ``layer_types`` (the keyword ``task_ids`` of
        its forward). Returns the names of the modules reached.

        Raises:
            ValueError: ``model`` has no such module.
        """
        reached = []
        for name, module in model.named_modules():
            if isinstance(module, layer_types):
                self._handles.append(module.register_forward_pre_hook(self._pass_task_ids, with_kwargs=True))
                reached.append(name)
        if not reached:
            raise ValueError(f"{type(model).__name__} has no {layer_types} layer to route by task.")
        return reached

    def detach(self) -> None:
        """Remove the hooks (`attach` undone)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def set(self, task_ids: torch.Tensor | None) -> None:
        """The ids of the next batch: long ``[B]``, each in ``[0, num_tasks)``; ``None`` clears them. They
        stay until the next call, through the backward pass and any recomputation in it."""
        if task_ids is not None:
            check_task_ids(task_ids, self.num_tasks)
        self._task_ids = task_ids

    @property
    def task_ids(self) -> torch.Tensor | None:
        return self._task_ids

    def ids_for(self, batch_size: int) -> torch.Tensor:
        """The ids for a layer input of ``batch_size`` rows: the batch's own, or each repeated in place
        when generation expanded every example to several rows (beams, returned sequences)."""
        if self._task_ids is None:
            raise ValueError("This model routes each example by its task: pass task_ids (a long tensor [batch]).")
        count = len(self._task_ids)
        if batch_size == count:
            return self._task_ids
        if count and batch_size % count == 0:
            return self._task_ids.repeat_interleave(batch_size // count)
        raise ValueError(f"task_ids has {count} entries but an adapted layer received a batch of {batch_size}.")

    def _pass_task_ids(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        hidden = args[0] if args else next(value for value in kwargs.values() if isinstance(value, torch.Tensor))
        kwargs["task_ids"] = self.ids_for(hidden.shape[0]).to(hidden.device)
        return args, kwargs

