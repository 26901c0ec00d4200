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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from peft.tuners.poly.router import PolyRouter

from ..tasks import check_task_ids

UNKNOWN_TASK_POLICIES = ("error", "average", "router")


class TaskRouting:
    """The task ids of the batch being computed, handed to every adapted layer.

    Args:
        num_tasks: How many tasks the adapters know; ids are checked against it.
        unknown_tasks: ``"error"``: an id outside ``[0, num_tasks)`` is an error. ``"average"``: such an
            example uses the average of the skills (PEFT Poly / MHR: uniform mixing weights over the skills
            of every split), as for a task never trained; its layers see id 0, whose mixing is replaced.
            ``"router"``: such an example, and every example of a batch given no ids at all, is left to the
            adapters' token routers (multi-head LoRA with ``router="task_or_token"``); its layers see id -1.

    Example::

        routing = TaskRouting(num_tasks=3)
        routing.attach(peft_model, (peft.tuners.poly.layer.Linear,))
        routing.set(task_ids)  # before each forward (or generate)
        output = peft_model(**inputs)
    """

    def __init__(self, num_tasks: int, unknown_tasks: str = "error") -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}.")
        if unknown_tasks not in UNKNOWN_TASK_POLICIES:
            raise ValueError(f"Unknown unknown_tasks policy {unknown_tasks!r}; choose one of {UNKNOWN_TASK_POLICIES}.")
        self.num_tasks = num_tasks
        self.unknown_tasks = unknown_tasks
        self._task_ids: torch.Tensor | None = None
        self._unknown: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []
        self._by_tokens = False

    @contextmanager
    def by_tokens(self) -> Iterator[None]:
        """Within it, every example is left to the adapters' token routers whatever its task id, as one given
        no id is (the ids still pick the head whose labels count): to train and measure the routing of inputs
        that come without a task id. Needs ``unknown_tasks="router"``."""
        if self.unknown_tasks != "router":
            raise ValueError(f"Routing by tokens needs token routers (unknown_tasks='router'), not {self.unknown_tasks!r}.")
        self._by_tokens = True
        try:
            yield
        finally:
            self._by_tokens = False

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
            elif isinstance(module, PolyRouter) and self.unknown_tasks == "average":
                self._handles.append(module.register_forward_hook(self._average_unknown_tasks))
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
        self._unknown = None
        if task_ids is not None:
            self.check(task_ids)
        if self._by_tokens:
            task_ids = None
        if task_ids is not None and self.unknown_tasks != "error":
            unknown = (task_ids < 0) | (task_ids >= self.num_tasks)
            if unknown.any():
                self._unknown, task_ids = unknown, task_ids.masked_fill(unknown, 0 if self.unknown_tasks == "average" else -1)
        self._task_ids = task_ids

    def check(self, task_ids: torch.Tensor) -> None:
        """Raise naming the problem unless ``task_ids`` is a long ``[B]`` tensor whose ids are known (or,
        with ``unknown_tasks="average"`` or ``"router"``, any ids)."""
        check_task_ids(task_ids, self.num_tasks, check_values=self.unknown_tasks == "error")

    @property
    def task_ids(self) -> torch.Tensor | None:
        return self._task_ids

    def _expanded(self, values: torch.Tensor, batch_size: int) -> torch.Tensor:
        count = len(values)
        if batch_size == count:
            return values
        if count and batch_size % count == 0:
            return values.repeat_interleave(batch_size // count)
        raise ValueError(f"task_ids has {count} entries but an adapted layer received a batch of {batch_size}.")

    def ids_for(self, batch_size: int) -> torch.Tensor:
        """The ids for a layer input of ``batch_size`` rows: the batch's own, or each repeated in place
        when generation expanded every example to several rows (beams, returned sequences)."""
        if self._task_ids is None:
            raise ValueError("This model routes each example by its task: pass task_ids (a long tensor [batch]).")
        return self._expanded(self._task_ids, batch_size)

    def _pass_task_ids(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        if self._task_ids is None and self.unknown_tasks == "router":
            kwargs["task_ids"] = None  # the layers' token routers decide
            return args, kwargs
        hidden = args[0] if args else next(value for value in kwargs.values() if isinstance(value, torch.Tensor))
        kwargs["task_ids"] = self.ids_for(hidden.shape[0]).to(hidden.device)
        return args, kwargs

    def _average_unknown_tasks(self, module: nn.Module, args: tuple, mixing: torch.Tensor) -> torch.Tensor:
        """PEFT Poly's router output ``[B, n_splits, n_skills]`` with the rows of unknown tasks uniform."""
        if self._unknown is None:
            return mixing
        unknown = self._expanded(self._unknown, mixing.shape[0]).to(mixing.device).view(-1, 1, 1)
        return mixing.masked_fill(unknown, 1.0 / mixing.shape[-1])

