"""`transformers.Trainer` with a multi-task optimisation method (`moezoo.balancing.TaskBalancer`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from .balancer import TaskBalancer


class _EndEpoch(TrainerCallback):
    """Closes the balancer's epoch (DWA's epoch means) when the Trainer's epoch ends."""

    def __init__(self, balancer: TaskBalancer) -> None:
        self.balancer = balancer

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.balancer.end_epoch()


class BalancedTrainer(Trainer):
    """A `transformers.Trainer` whose training step balances the model's task losses with ``balancer``:

        balancer = TaskBalancer(model, "pcgrad")
        trainer = BalancedTrainer(model=model, args=args, train_dataset=data, balancer=balancer)
        trainer.train()

    The model is a moezoo multi-task model given labels in each batch. A loss weighting's surrogate goes through
    the Trainer's own backward (``accelerator.backward``); a gradient method sets the gradients itself, with
    data parallelism's reduction off for the step. Add the balancer's parameters (uncertainty weighting's) to
    the optimizer yourself (``optimizers=``) when the method has any; its state is not part of the Trainer's
    checkpoints (save ``balancer.state_dict()`` beside them to resume a stateful method exactly). FAMO as in
    its paper reads a second forward pass after every optimizer step, which needs moezoo's own loop
    (`moezoo.training.train`); FAMO with ``{"update_from": "next_batch"}`` reads none and trains here.
    """

    def __init__(self, *args: Any, balancer: TaskBalancer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if balancer.needs_output_after:
            raise ValueError(
                f"{balancer.method!r} reads a second forward pass after each optimizer step, which the Trainer's loop "
                "does not make: train with moezoo.training.train instead, or pass the option update_from='next_batch'."
            )
        if self.args.gradient_accumulation_steps != 1:
            raise ValueError(
                "BalancedTrainer balances each batch's losses on their own: set gradient_accumulation_steps=1 "
                f"(got {self.args.gradient_accumulation_steps}) and a larger per-device batch instead."
            )
        self.balancer = balancer
        self.add_callback(_EndEpoch(balancer))

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.balancer.backward_context(self.accelerator, model), self.compute_loss_context_manager():
            loss = self.balancer.backward(model(**inputs), backward=self.accelerator.backward)
        self.balancer.after_step()  # GradNorm's weights from this step's norms (the others have nothing to do)
        return loss
