"""Under `accelerate launch` (or plain python, one process), trains a small CGC model (shared and task experts,
towers) for three steps with every multi-task optimisation method of `moezoo.balancing`, each process on its
share of every batch (and MGDA-UB), and writes the final parameters of each method to ``{output_dir}/{N}_processes.json``.

In the last batch the ``cvr`` task has labels in the first half only, so that on two processes one of them
holds none of its labels. One process and two must end with the same parameters.

    accelerate launch --num_processes 2 ... balanced_steps.py OUTPUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

import moezoo
from moezoo.balancing import METHODS, TaskBalancer

TASKS = [{"name": "ctr", "kind": "binary"}, {"name": "cvr", "kind": "binary", "weight": 0.5}, {"name": "like", "kind": "binary"}]
BATCH = 16
#: Every method, MGDA's representation-level variant (MGDA-UB) and FAMO updated from the next batch.
VARIANTS = {
    **{method: (method, {}) for method in METHODS},
    "mgda_ub": ("mgda", {"representation": True}),
    "famo_next_batch": ("famo", {"update_from": "next_batch"}),
}


def batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    made = []
    for index in range(3):
        labels = torch.randint(0, 2, (BATCH, 3), generator=generator).float()
        if index == 2:
            labels[BATCH // 2 :, 1] = float("nan")
        made.append({"inputs_embeds": torch.randn(BATCH, 6, generator=generator), "labels": labels})
    return made


def train(variant: str, accelerator: Accelerator) -> dict[str, list]:
    torch.manual_seed(0)
    model = moezoo.create_model("cgc", tasks=TASKS, input_size=6, num_shared_experts=2, num_task_experts=1)
    method, options = VARIANTS[variant]
    balancer = TaskBalancer(model, method, options, seed=0)
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.1)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    rows = BATCH // accelerator.num_processes
    own = slice(accelerator.process_index * rows, (accelerator.process_index + 1) * rows)
    for batch in batches():
        local = {name: value[own] for name, value in batch.items()}
        with balancer.backward_context(accelerator, wrapped):
            balancer.backward(wrapped(**local))
        optimizer.step()
        balancer.after_step(lambda: wrapped(**local))
        optimizer.zero_grad()
        balancer.end_epoch()  # each batch an epoch, so that DWA's weights move by the third
    parameters = {name: parameter.detach().tolist() for name, parameter in accelerator.unwrap_model(wrapped).named_parameters()}
    parameters.update({f"balancer.{name}": value.detach().tolist() for name, value in balancer.state_dict().items()
                       if isinstance(value, torch.Tensor) and value.is_floating_point()})
    return parameters


if __name__ == "__main__":
    output_dir = Path(sys.argv[1])
    accelerator = Accelerator(cpu=True)
    results = {variant: train(variant, accelerator) for variant in VARIANTS}
    if accelerator.is_main_process:
        (output_dir / f"{accelerator.num_processes}_processes.json").write_text(json.dumps(results))
