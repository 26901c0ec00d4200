"""Runs the tabular recipe, then has every rank save its final parameters and world size, so that a
test can check that the processes really were several and ended in sync."""

import json
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
from train_tabular import main  # noqa: E402

if __name__ == "__main__":
    result = main(sys.argv[1:]).training
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    output_dir = Path(result.best_checkpoint).parent
    state = {name: tensor.detach().contiguous() for name, tensor in result.model.state_dict().items()}
    save_file(state, output_dir / f"rank{rank}.safetensors")
    (output_dir / f"rank{rank}.json").write_text(json.dumps({"world_size": world_size, "steps": result.global_step}))
