import pytest
import torch

from moezoo.data import make_expert_selection_problem


def test_expert_selection_problem_targets_follow_their_experts():
    problem = make_expert_selection_problem(
        num_experts=6, num_tasks=4, experts_per_task=1, input_size=18, split_sizes=(3000, 50, 50), seed=3
    )
    assert [len(problem.dataset[split]) for split in ("train", "validation", "test")] == [3000, 50, 50]
    train = problem.dataset["train"][:]
    assert train["inputs_embeds"].shape == (3000, 18) and train["labels"].shape == (3000, 4)
    outputs = problem.experts(train["inputs_embeds"])[:, :, 0]  # scalar experts: [N, E]
    correlation = torch.corrcoef(torch.cat([train["labels"], outputs], dim=1).T)[:4, 4:]  # [T, E]
    for task, (expert,) in enumerate(problem.task_experts):
        assert correlation[task, expert].abs() > 0.99  # only noise of std 0.01 separates them
        others = [e for e in range(6) if e != expert]
        assert correlation[task, others].abs().max() < 0.1  # experts read disjoint input blocks
    assert not any(p.requires_grad for p in problem.experts.parameters())


def test_expert_selection_problem_is_deterministic_and_checks_its_arguments():
    first = make_expert_selection_problem(num_experts=4, num_tasks=3, input_size=8, split_sizes=(20, 5, 5), seed=1)
    second = make_expert_selection_problem(num_experts=4, num_tasks=3, input_size=8, split_sizes=(20, 5, 5), seed=1)
    assert first.task_experts == second.task_experts and all(len(s) == 2 for s in first.task_experts)
    assert torch.equal(first.dataset["test"][:]["labels"], second.dataset["test"][:]["labels"])
    with pytest.raises(ValueError, match="experts_per_task"):
        make_expert_selection_problem(num_experts=4, experts_per_task=5, input_size=8)
    with pytest.raises(ValueError, match="input_size"):
        make_expert_selection_problem(num_experts=8, input_size=4)
