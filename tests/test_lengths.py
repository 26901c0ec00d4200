"""Batches the length of their content: padding trimmed per batch, examples grouped by length while the task
mixing, the seed, the sharding across processes and a resume keep their meaning."""

from collections import Counter

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

from moezoo.training import TaskMixingSampler, TensorDataset, evaluate, make_dataloader, make_eval_dataloader
from moezoo.training.lengths import LengthGroupedSampler, longest_first, padding_share, token_lengths, trim_padding


def padded_tokens(lengths, width):
    """Right-padded token columns for examples of ``lengths``."""
    mask = (torch.arange(width)[None, :] < torch.as_tensor(lengths)[:, None]).long()
    input_ids = (torch.arange(1, width + 1)[None, :] * mask).long()
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(mask)}


def test_a_batch_is_cut_to_its_longest_example_and_nothing_else_changes():
    batch = {**padded_tokens([3, 5, 2], 8), "labels": torch.ones(3, 8), "task_ids": torch.tensor([0, 1, 0])}
    trimmed = trim_padding(batch)
    assert trimmed["input_ids"].shape == (3, 5) and trimmed["token_type_ids"].shape == (3, 5)
    assert torch.equal(trimmed["attention_mask"], batch["attention_mask"][:, :5])
    assert trimmed["labels"].shape == (3, 8) and torch.equal(trimmed["task_ids"], batch["task_ids"])  # not token columns
    images = {"pixel_values": torch.ones(2, 3)}
    assert trim_padding(images)["pixel_values"] is images["pixel_values"]
    full = padded_tokens([8, 1], 8)
    assert trim_padding(full)["input_ids"].shape == (2, 8)
    assert trim_padding(padded_tokens([0, 0], 4))["input_ids"].shape == (2, 1)  # never an empty sequence


def test_trimming_leaves_an_adapted_models_outputs_unchanged(tiny_bert_folder):
    from moezoo.adapters import AdaptedTransformerModel

    model = AdaptedTransformerModel.from_base(
        tiny_bert_folder, [{"name": "a", "kind": "multiclass", "num_labels": 2}], "lora",
        adapter={"target_modules": ["query", "value"], "r": 4},
    ).eval()
    batch = padded_tokens([3, 5, 2], 12)
    batch["input_ids"] = batch["input_ids"] % 50
    full = model(**batch).logits["a"]
    torch.testing.assert_close(model(**trim_padding(batch)).logits["a"], full, rtol=1e-5, atol=1e-6)


def grouped_batches(sampler, batch_size):
    return [torch.tensor(batch) for batch in BatchSampler(sampler, batch_size, drop_last=False)]


def test_grouping_keeps_every_index_of_the_task_mixing_and_cuts_the_padding():
    generator = torch.Generator().manual_seed(0)
    task_ids = torch.randint(0, 3, (1000,), generator=generator)
    lengths = torch.where(task_ids == 2, 40, 8) + torch.randint(0, 20, (1000,), generator=generator)
    mixing = TaskMixingSampler(task_ids, "temperature", temperature=2.0, num_samples=900, seed=5)
    grouped = LengthGroupedSampler(lengths, 16, mixing, group_size=10, seed=5)
    assert len(grouped) == 900
    drawn = list(grouped)
    assert Counter(drawn) == Counter(list(mixing))  # the same draws, only their grouping changes
    plain = grouped_batches(list(mixing), 16)
    batches = grouped_batches(drawn, 16)
    assert all(len(batch) == 16 for batch in batches[:-1]) and len(batches[-1]) == 900 % 16  # the incomplete batch last
    assert padding_share(lengths, batches) < 0.5 * padding_share(lengths, plain)
    # Seeded per epoch: the same epoch gives the same order, the next epoch another one.
    assert list(grouped) == drawn
    grouped.set_epoch(1)
    assert mixing.epoch == 1 and list(grouped) != drawn
    grouped.set_epoch(0)
    assert list(grouped) == drawn


def test_without_a_sampler_every_example_comes_once_per_epoch():
    lengths = torch.arange(100) % 17
    grouped = LengthGroupedSampler(lengths, 8, seed=1)
    assert sorted(grouped) == list(range(100))
    batch_spreads = [int(lengths[batch].max() - lengths[batch].min()) for batch in grouped_batches(list(grouped), 8)]
    assert max(batch_spreads[:-1]) <= 2


def test_accelerate_shards_the_grouped_batches_between_processes():
    lengths = torch.arange(64) % 9
    batches = BatchSampler(LengthGroupedSampler(lengths, 4, seed=0), 4, drop_last=False)
    shards = [list(BatchSamplerShard(batches, num_processes=2, process_index=rank)) for rank in (0, 1)]
    assert sorted(index for shard in shards for batch in shard for index in batch) == list(range(64))
    assert [batch for pair in zip(*shards) for batch in pair] == list(batches)  # whole batches, in turn


def test_a_loader_over_token_data_pads_each_batch_to_its_longest_example():
    columns = {**padded_tokens([2, 9, 3, 4, 12, 2, 5, 3], 16), "labels": torch.zeros(8, 1)}
    loader = make_dataloader(TensorDataset(columns), batch_size=4, shuffle=False, seed=0)
    assert [batch["input_ids"].shape[1] for batch in loader] == [9, 12]


def test_an_evaluation_reads_token_data_longest_first_and_scores_as_in_order(tiny_bert_folder):
    from accelerate import Accelerator

    from moezoo.adapters import AdaptedTransformerModel

    assert longest_first(torch.tensor([3, 9, 3, 12, 1])) == [3, 1, 0, 2, 4]  # ties keep their order
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 24, (40,), generator=generator)
    columns = {**padded_tokens(lengths, 24), "labels": torch.randint(0, 2, (40,), generator=generator)}
    columns["input_ids"] = columns["input_ids"] % 50
    data = TensorDataset(columns)
    loader = make_eval_dataloader(data, batch_size=8)
    drawn = torch.cat([batch["attention_mask"].sum(1) for batch in loader])
    assert sorted(drawn.tolist()) == sorted(lengths.tolist()) and torch.equal(drawn, drawn.sort(descending=True).values)
    sorted_widths = [batch["input_ids"].shape[1] for batch in loader]
    in_order_widths = [batch["input_ids"].shape[1] for batch in make_dataloader(data, 8, shuffle=False, seed=0)]
    assert sum(sorted_widths) < sum(in_order_widths)

    model = AdaptedTransformerModel.from_base(
        tiny_bert_folder, [{"name": "a", "kind": "binary"}], "lora", adapter={"target_modules": ["query", "value"], "r": 4},
    ).eval()
    accelerator = Accelerator()
    longest = evaluate(model, accelerator.prepare(loader), accelerator)
    in_order = evaluate(model, accelerator.prepare(make_dataloader(data, 8, shuffle=False, seed=0)), accelerator)
    assert longest.keys() == in_order.keys()
    for name in longest:
        assert longest[name] == pytest.approx(in_order[name], rel=1e-5, abs=1e-6), name


def test_bad_lengths_and_sizes_are_named():
    with pytest.raises(ValueError, match="lengths must be an integer tensor"):
        LengthGroupedSampler(torch.ones(4), 2)
    with pytest.raises(ValueError, match="batch_size and group_size must be positive"):
        LengthGroupedSampler(torch.ones(4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="attention_mask must be"):
        token_lengths(torch.ones(4))
