#!/usr/bin/env python
"""moezoo's multi-task optimisation methods against LibMTL's implementations, fed the same task gradients.

    python benchmarks/balancing_vs_libmtl.py [--seeds 0 1 2 3 4]

LibMTL (1.1.5, the release on PyPI) is installed with ``--no-deps`` into a folder of its own (with SciPy,
which its CAGrad solves with), never into the environment, and only its weighting modules are loaded (its
package imports its trainer and architectures, which need more). Each of its methods gets the same
constructed task gradients ``G`` ``[K, P]`` (a common part and task parts of varied scale, so that tasks
conflict), through its own gradient-collection hook; the update it writes is compared with moezoo's
``αᵀ G``, where ``α`` is moezoo's rule on ``G Gᵀ``. For the loss weightings the weights are compared.
Methods LibMTL 1.1.5 lacks (Aligned-MTL, Nash-MTL, FAMO) are checked against their papers' conditions in
tests/test_gradient_rules.py and tests/test_loss_weighting.py instead.

Results: benchmarks/results/balancing_vs_libmtl.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recipe_runs import write_results

from moezoo.balancing import cagrad_weights, imtl_g_weights, mgda_weights, pcgrad_weights
from moezoo.balancing.loss_weighting import DynamicWeightAveraging, UncertaintyWeighting

LIBMTL_VERSION = "1.1.5"


def install_libmtl(folder: Path) -> Path:
    """LibMTL and SciPy in ``folder`` (pip ``--target``, no dependencies); returns the folder."""
    if not (folder / "LibMTL").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
             f"LibMTL=={LIBMTL_VERSION}", "scipy"],
            check=True,
        )
    return folder


def load_weighting(folder: Path, name: str) -> type:
    """LibMTL's weighting class ``name`` without running its package's ``__init__`` modules."""
    for package, path in (("LibMTL", folder / "LibMTL"), ("LibMTL.weighting", folder / "LibMTL" / "weighting")):
        if package not in sys.modules:
            module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(package, None, is_package=True))
            module.__path__ = [str(path)]
            sys.modules[package] = module
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return getattr(importlib.import_module(f"LibMTL.weighting.{name}"), name)


def libmtl_update(method_class: type, grads: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """The update LibMTL's method writes for the task gradients ``grads`` ``[K, P]``."""
    method = method_class()
    method.task_num, method.device, method.rep_grad = grads.shape[0], torch.device("cpu"), False
    shared = torch.zeros(grads.shape[1], requires_grad=True)
    written: list[torch.Tensor] = []
    method.get_share_params = lambda: [shared]
    method.zero_grad_share_params = lambda: None
    method._compute_grad = lambda losses, mode, rep_grad=False: grads.clone()
    method._reset_grad = lambda new_grads: written.append(new_grads.detach().clone())
    if hasattr(method, "init_param"):
        method.init_param()
    method.backward(torch.zeros(grads.shape[0], requires_grad=True), **kwargs)
    return written[0]


def task_gradients(num_tasks: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(size, generator=generator)
    scales = torch.linspace(0.5, 3.0, num_tasks)[:, None]
    return 0.3 * common + scales * torch.randn(num_tasks, size, generator=generator)


def compare(folder: Path, seeds: list[int]) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        # LibMTL 1.1.5's CAGrad is written for three tasks; PCGrad's orders come from Python's random, so it is
        # compared on two tasks, where the order does not matter.
        cases = {
            "mgda": (3, "MGDA", {"mgda_gn": "none"}, lambda gram: mgda_weights(gram)),
            "pcgrad": (2, "PCGrad", {}, lambda gram: pcgrad_weights(gram)),
            "cagrad": (3, "CAGrad", {"calpha": 0.4, "rescale": 1}, lambda gram: cagrad_weights(gram, c=0.4, rescale=1)),
            "imtl_g": (4, "IMTL", {}, lambda gram: imtl_g_weights(gram)),
        }
        for name, (num_tasks, libmtl_name, kwargs, rule) in cases.items():
            grads = task_gradients(num_tasks, 64, seed)
            theirs = libmtl_update(load_weighting(folder, libmtl_name), grads, **kwargs)
            ours = rule(grads.double() @ grads.double().T).float() @ grads
            rows.append({"method": name, "seed": seed, "tasks": num_tasks,
                         "max_abs_difference": (theirs - ours).abs().max().item(),
                         "relative_difference": ((theirs - ours).norm() / theirs.norm()).item()})
        # Loss weightings: the weights, from the same losses and state.
        losses = torch.rand(3, generator=torch.Generator().manual_seed(seed)) + 0.1
        theirs = torch.as_tensor(_libmtl_uncertainty_weights(folder, losses, log_variances=torch.tensor([0.3, -0.2, 0.1])))
        ours_uw = UncertaintyWeighting(3)
        ours_uw.log_variances.data = torch.tensor([0.3, -0.2, 0.1])
        ours_uw.combine(losses)
        rows.append(_weights_row("uncertainty", seed, theirs, ours_uw.last_weights))
        history = (torch.rand(2, 3, generator=torch.Generator().manual_seed(seed + 100)) + 0.1).double()
        theirs = torch.as_tensor(_libmtl_dwa_weights(folder, losses, history.numpy(), temperature=2.0))
        ours_dwa = DynamicWeightAveraging(3, temperature=2.0)
        ours_dwa.epoch_means = history
        ours_dwa.combine(losses)
        rows.append(_weights_row("dwa", seed, theirs.float(), ours_dwa.last_weights.float()))
    return rows


def _weights_row(method: str, seed: int, theirs: torch.Tensor, ours: torch.Tensor) -> dict[str, Any]:
    difference = (theirs.float() - ours.float()).abs()
    return {"method": method, "seed": seed, "tasks": len(ours), "max_abs_difference": difference.max().item(),
            "relative_difference": (difference.norm() / theirs.float().norm()).item()}


def _libmtl_uncertainty_weights(folder: Path, losses: torch.Tensor, log_variances: torch.Tensor) -> np.ndarray:
    method = load_weighting(folder, "UW")()
    method.task_num, method.device = len(losses), torch.device("cpu")
    method.init_param()
    method.loss_scale.data = log_variances.clone()
    return method.backward(losses.clone().requires_grad_(True))


def _libmtl_dwa_weights(folder: Path, losses: torch.Tensor, epoch_means: np.ndarray, temperature: float) -> np.ndarray:
    method = load_weighting(folder, "DWA")()
    method.task_num, method.device, method.epoch = len(losses), torch.device("cpu"), 2
    method.train_loss_buffer = epoch_means.T  # [tasks, epochs]
    return method.backward(losses.clone().requires_grad_(True), T=temperature)


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"### moezoo's balancing methods against LibMTL {LIBMTL_VERSION}",
        "",
        "The same constructed task gradients (64 entries, tasks in conflict) or losses; the largest difference "
        "over the seeds between LibMTL's update (or weights) and moezoo's, absolute and relative to LibMTL's norm.",
        "",
        "| method | tasks | seeds | largest absolute difference | largest relative difference |",
        "|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(row["method"] for row in rows):
        selected = [row for row in rows if row["method"] == method]
        lines.append(
            f"| {method} | {selected[0]['tasks']} | {len(selected)} | {max(row['max_abs_difference'] for row in selected):.1e} "
            f"| {max(row['relative_difference'] for row in selected):.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--libmtl_dir", type=Path, default=None, help="where LibMTL is (or gets) installed")
    args = parser.parse_args()
    folder = args.libmtl_dir or Path(tempfile.gettempdir()) / f"moezoo-libmtl-{LIBMTL_VERSION}"
    rows = compare(install_libmtl(folder), args.seeds)
    write_results("balancing_vs_libmtl", rows, report(rows))


if __name__ == "__main__":
    main()
