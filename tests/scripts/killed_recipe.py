"""Runs the tabular recipe and kills its own process with SIGKILL after a given number of optimiser
steps, as a crash or an out-of-memory kill would: nothing gets the chance to clean up.

    python killed_recipe.py KILL_AT_STEP <recipe arguments>
"""

import os
import signal
import sys
from pathlib import Path

from accelerate.optimizer import AcceleratedOptimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
from train_tabular import main  # noqa: E402

if __name__ == "__main__":
    kill_at_step = int(sys.argv[1])
    original_step = AcceleratedOptimizer.step
    steps = 0

    def step_then_maybe_die(self, *args, **kwargs):
        global steps
        result = original_step(self, *args, **kwargs)
        steps += 1
        if steps == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    AcceleratedOptimizer.step = step_then_maybe_die
    main(sys.argv[2:])
