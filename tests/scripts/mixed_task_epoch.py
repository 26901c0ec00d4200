"""Under `accelerate launch`, draws one epoch of a mixed-task dataset through the training loop's data
path (`make_dataloader` with a `TaskMixingSampler`, prepared by Accelerate) and writes the example ids
each process saw to ``{output_dir}/rank{N}.json``.

    accelerate launch ... mixed_task_epoch.py OUTPUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration

from moezoo.training import TaskMixingSampler, TensorDataset, make_dataloader

if __name__ == "__main__":
    output_dir = Path(sys.argv[1])
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    # 96 examples of three tasks of sizes 48, 32 and 16; batches of 8 per process.
    task_ids = torch.cat([torch.full((48,), 0), torch.full((32,), 1), torch.full((16,), 2)])
    data = TensorDataset({"example_ids": torch.arange(96), "task_ids": task_ids})
    loader = make_dataloader(data, 8, shuffle=True, seed=0, sampler=TaskMixingSampler(task_ids, "proportional", seed=0))
    loader = accelerator.prepare(loader)
    seen, batch_tasks = [], []
    for batch in loader:
        seen += batch["example_ids"].tolist()
        batch_tasks.append(sorted(set(batch["task_ids"].tolist())))
    (output_dir / f"rank{accelerator.process_index}.json").write_text(json.dumps({"seen": seen, "batch_tasks": batch_tasks}))
