"""Align-LoRA's alignment loss: formulas, grouping by task id, padding, gradients to the A matrices."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertModel

from moezoo.adapters import (
    LoraAlignment,
    TaskRouting,
    gaussian_symmetric_kl,
    multi_kernel_mmd,
    positional_gaussian_kl,
    positional_mmd,
)
from moezoo.adapters.alignment import AUTHORS_MMD_SIGMAS


def test_the_distances_follow_their_formulas():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(50, 3, generator=generator), torch.randn(40, 3, generator=generator) * 2 + 1
    p = torch.distributions.Normal(first.mean(0), (first.var(0, unbiased=False) + 1e-5).sqrt())
    q = torch.distributions.Normal(second.mean(0), (second.var(0, unbiased=False) + 1e-5).sqrt())
    expected = (torch.distributions.kl_divergence(p, q) + torch.distributions.kl_divergence(q, p)).sum()
    torch.testing.assert_close(gaussian_symmetric_kl(first, second), expected)
    assert gaussian_symmetric_kl(first, first).abs() < 1e-5
    assert multi_kernel_mmd(first, first).abs() < 1e-6
    assert multi_kernel_mmd(first, second) > multi_kernel_mmd(first, torch.randn(40, 3, generator=generator))


def test_the_authors_forms_follow_their_code_position_by_position():
    """A Gaussian per token position over a task's examples (unbiased variance + 1e-8), the two KL directions
    averaged, summed over dimensions and averaged over positions; the MMD per position over their 19 scales."""
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(6, 4, 3, generator=generator, dtype=torch.float64)
    second = torch.randn(5, 4, 3, generator=generator, dtype=torch.float64) * 1.5 + 0.5
    per_position = []
    for position in range(4):
        p = torch.distributions.Normal(first[:, position].mean(0), (first[:, position].var(0) + 1e-8).sqrt())
        q = torch.distributions.Normal(second[:, position].mean(0), (second[:, position].var(0) + 1e-8).sqrt())
        both = torch.distributions.kl_divergence(p, q).sum() + torch.distributions.kl_divergence(q, p).sum()
        per_position.append(both / 2)
    torch.testing.assert_close(positional_gaussian_kl(first, second), torch.stack(per_position).mean())

    def kernel_mean(x, y):
        total = 0.0
        for position in range(4):
            for a in x[:, position]:
                for b in y[:, position]:
                    total += sum(torch.exp(-((a - b) ** 2).sum() / (2 * sigma)) for sigma in AUTHORS_MMD_SIGMAS)
        return total / (len(x) * len(y) * 4)

    expected = kernel_mean(first, first) + kernel_mean(second, second) - 2 * kernel_mean(first, second)
    torch.testing.assert_close(positional_mmd(first, second), expected)
    assert positional_gaussian_kl(first, first).abs() < 1e-9 and positional_mmd(first, first).abs() < 1e-9


def lora_bert():
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32))
    return get_peft_model(model, LoraConfig(target_modules=["query", "value"], r=4)).eval()


@pytest.mark.parametrize("form", ["authors", "pooled"])
@pytest.mark.parametrize("distance", ["kl", "mmd"])
def test_the_loss_groups_by_task_id_and_reaches_the_a_matrices(distance, form):
    model = lora_bert()
    routing = TaskRouting(num_tasks=3)
    alignment = LoraAlignment(routing, distance=distance, weight=0.2, form=form)
    assert len(alignment.attach(model)) == 4
    tokens = torch.randint(0, 50, (6, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(6, 5, dtype=torch.long)
    mask[:, 3:] = 0  # padding

    def loss(task_ids, inputs=tokens, attention_mask=mask):
        routing.set(task_ids)
        alignment.start(attention_mask)
        model(input_ids=inputs, attention_mask=attention_mask)
        return alignment.loss()

    # The same examples under two tasks: identical distributions, no loss.
    doubled = torch.cat([tokens[:3], tokens[:3]])
    assert loss(torch.tensor([0, 0, 0, 1, 1, 1]), doubled).abs() < 1e-4
    # Grouped by task id, not by position: interleaving the same examples changes nothing.
    blocked = loss(torch.tensor([0, 0, 0, 2, 2, 2]))
    order = torch.tensor([0, 3, 1, 4, 2, 5])
    interleaved = loss(torch.tensor([0, 2, 0, 2, 0, 2]), tokens[order], mask[order])
    torch.testing.assert_close(interleaved, blocked)
    assert blocked > 0
    # The pooled form leaves padding out; the authors' counts every position, as their code does.
    padded = tokens.clone()
    padded[:, 3:] = 7
    with_other_padding = loss(torch.tensor([0, 0, 0, 2, 2, 2]), padded)
    if form == "pooled":
        torch.testing.assert_close(with_other_padding, blocked)
    else:
        assert not torch.allclose(with_other_padding, blocked)
    # Its gradient reaches every A matrix.
    model.zero_grad()
    loss(torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    for name, parameter in model.named_parameters():
        if "lora_A" in name:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # One task in the batch: no pair to align, a zero that still backpropagates.
    single = loss(torch.zeros(6, dtype=torch.long))
    assert single.item() == 0.0 and single.requires_grad
    # The authors' KL needs two examples of a task for its variance: a task with one is left out.
    lone = loss(torch.tensor([0, 0, 0, 1, 1, 2]))
    without = loss(torch.tensor([0, 0, 0, 1, 1]), tokens[:5], mask[:5])
    if form == "authors" and distance == "kl":
        torch.testing.assert_close(lone, without)
    assert torch.isfinite(lone)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="Unknown alignment distance 'cosine'"):
        LoraAlignment(TaskRouting(2), distance="cosine")
    with pytest.raises(ValueError, match="Unknown alignment form 'paper'"):
        LoraAlignment(TaskRouting(2), form="paper")
    assert LoraAlignment(TaskRouting(2)).weight == 0.2 and LoraAlignment(TaskRouting(2), form="pooled", weight=0.5).weight == 0.5
    with pytest.raises(ValueError, match="has no LoRA layer"):
        LoraAlignment(TaskRouting(2)).attach(torch.nn.Linear(2, 2))
    alignment = LoraAlignment(TaskRouting(2))
    alignment.attach(lora_bert())
    with pytest.raises(ValueError, match="No LoRA layer ran since start"):
        alignment.loss()


def test_the_loss_of_one_pass_can_be_taken_in_every_form_and_distance():
    model = lora_bert()
    routing = TaskRouting(num_tasks=2)
    recorders = {(form, distance): LoraAlignment(routing, distance, weight=0.5, form=form)
                 for form in ("authors", "pooled") for distance in ("kl", "mmd")}
    for recorder in recorders.values():
        recorder.attach(model)
    tokens = torch.randint(0, 50, (6, 5), generator=torch.Generator().manual_seed(3))
    routing.set(torch.tensor([0, 1, 0, 1, 0, 1]))
    for recorder in recorders.values():
        recorder.start()
    model(input_ids=tokens)
    first = recorders["authors", "kl"]
    for (form, distance), recorder in recorders.items():
        torch.testing.assert_close(first.loss(distance=distance, form=form), recorder.loss())
    torch.testing.assert_close(first.loss(weight=1.0), 2 * first.loss())
    with pytest.raises(ValueError, match="Unknown alignment distance 'l2' or form 'authors'"):
        first.loss(distance="l2")
