"""The task-vector merging methods against their papers' definitions, computed directly on flattened vectors
and matrices, and their exactness cases: one source at weight 1, and N copies of one source."""

import pytest
import torch

from moezoo.merging import (
    dare_linear,
    dare_ties,
    drop_and_rescale,
    iso_c,
    iso_cts,
    merge_task_vectors,
    task_arithmetic,
    ties,
    trim_to_density,
)


def task_vectors(count=3, seed=0, rank=None):
    """Task vectors of a weight matrix [12, 10] (of rank ``rank`` when given, a LoRA update) and a bias [12]."""
    generator = torch.Generator().manual_seed(seed)
    vectors = []
    for _ in range(count):
        if rank is None:
            weight = torch.randn(12, 10, generator=generator, dtype=torch.float64)
        else:
            weight = torch.randn(12, rank, generator=generator, dtype=torch.float64) @ torch.randn(rank, 10, generator=generator, dtype=torch.float64)
        vectors.append({"layer.weight": weight, "layer.bias": torch.randn(12, generator=generator, dtype=torch.float64)})
    return vectors


def flat(vector):
    return torch.cat([vector[name].flatten() for name in ("layer.weight", "layer.bias")])


def test_task_arithmetic_is_the_scaled_weighted_sum_and_gives_one_source_back():
    vectors = task_vectors()
    merged = task_arithmetic(vectors, scaling=0.3, weights=[1.0, 2.0, 0.5])
    torch.testing.assert_close(flat(merged), 0.3 * (flat(vectors[0]) + 2 * flat(vectors[1]) + 0.5 * flat(vectors[2])))
    assert torch.equal(flat(task_arithmetic(vectors[:1], scaling=1.0)), flat(vectors[0]))
    # The default scaling is 1 / N: N copies of one fine-tune give it back.
    torch.testing.assert_close(flat(task_arithmetic([vectors[0]] * 4)), flat(vectors[0]), rtol=0, atol=1e-15)


def test_trim_keeps_the_largest_magnitudes_over_the_whole_task_vector():
    vector = task_vectors(count=1)[0]
    trimmed = trim_to_density(vector, 0.2)
    values = flat(vector)
    keep = round(0.2 * values.numel())
    expected = torch.zeros_like(values)
    top = values.abs().topk(keep).indices
    expected[top] = values[top]
    assert torch.equal(flat(trimmed), expected)
    # One threshold for the whole vector: the bias keeps a share of its own that need not be 20 %.
    assert (trimmed["layer.weight"] != 0).sum() + (trimmed["layer.bias"] != 0).sum() == keep


def ties_by_hand(vectors, density, scaling):
    """TIES as its paper states it, on the flattened task vectors."""
    rows = torch.stack([flat(vector) for vector in vectors])
    keep = round(density * rows.shape[1])
    trimmed = torch.zeros_like(rows)
    for index, row in enumerate(rows):
        top = row.abs().topk(keep).indices
        trimmed[index, top] = row[top]
    elected = torch.sign(trimmed.sum(0))
    agrees = (torch.sign(trimmed) == elected) & (trimmed != 0)
    return scaling * (trimmed * agrees).sum(0) / agrees.sum(0).clamp_min(1)


def test_ties_trims_elects_signs_and_averages_the_agreeing_entries():
    vectors = task_vectors(count=4, seed=1)
    torch.testing.assert_close(flat(ties(vectors, density=0.3, scaling=0.7)), ties_by_hand(vectors, 0.3, 0.7))
    # Nothing trimmed, copies of one source: the disjoint mean is the source.
    torch.testing.assert_close(flat(ties([vectors[0]] * 3, density=1.0)), flat(vectors[0]), rtol=0, atol=1e-15)


def test_dare_drops_at_its_rate_rescales_what_it_keeps_and_is_seeded():
    vector = {"weight": torch.randn(200, 200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)}
    dropped = drop_and_rescale(vector, 0.3, torch.Generator().manual_seed(0))["weight"]
    kept = dropped != 0
    assert kept.float().mean().item() == pytest.approx(0.3, abs=0.01)
    torch.testing.assert_close(dropped[kept], vector["weight"][kept] / 0.3)
    assert torch.equal(drop_and_rescale(vector, 0.3, torch.Generator().manual_seed(0))["weight"], dropped)
    vectors = task_vectors(count=2, seed=3)
    # DARE keeping everything is plain task arithmetic / TIES without a trim.
    assert torch.equal(flat(dare_linear(vectors, density=1.0, scaling=0.5)), flat(task_arithmetic(vectors, scaling=0.5)))
    assert torch.equal(flat(dare_ties(vectors, density=1.0)), flat(ties(vectors, density=1.0)))
    assert not torch.equal(flat(dare_linear(vectors, density=0.5, seed=0)), flat(dare_linear(vectors, density=0.5, seed=1)))


def test_iso_c_flattens_the_sums_spectrum_and_keeps_its_directions():
    vectors = task_vectors(count=3, seed=4)
    merged = iso_c(vectors, scaling=1.5)
    total = sum(vector["layer.weight"] for vector in vectors)
    left, values, right = torch.linalg.svd(total, full_matrices=False)
    # Full rank: the authors' σ̄ U Vᵀ over all min(m, n) singular values.
    torch.testing.assert_close(merged["layer.weight"], 1.5 * values.mean() * left @ right)
    torch.testing.assert_close(merged["layer.bias"], 1.5 * sum(vector["layer.bias"] for vector in vectors) / 3)


def test_iso_c_of_low_rank_updates_stays_low_rank():
    """LoRA updates of rank 2 from 3 tasks: the sum has rank 6, and so has the merge, its 6 singular values
    all the mean of the sum's 6 (the authors' code would spread the mean over all 10 and fill the null space)."""
    vectors = task_vectors(count=3, seed=5, rank=2)
    merged = iso_c(vectors)["layer.weight"]
    total = sum(vector["layer.weight"] for vector in vectors)
    total_values = torch.linalg.svdvals(total)
    merged_values = torch.linalg.svdvals(merged)
    torch.testing.assert_close(merged_values[:6], total_values[:6].mean().expand(6))
    assert merged_values[6:].max() < 1e-12
    # The same column and row spaces as the sum.
    left = torch.linalg.svd(total)[0][:, :6]
    torch.testing.assert_close(left @ left.T @ merged, merged)


def test_iso_cts_joins_the_common_and_task_specific_subspaces_with_a_flat_spectrum():
    vectors = task_vectors(count=3, seed=6)
    # All of the rank common: Iso-C.
    torch.testing.assert_close(iso_cts(vectors, common_space_fraction=1.0)["layer.weight"], iso_c(vectors)["layer.weight"])
    merged = iso_cts(vectors, common_space_fraction=0.4, scaling=1.0)["layer.weight"]
    # Rank 10: ⌊0.4 · 10⌋ = 4 common directions leave 6, 2 per task; σ̄ is the mean of the 10 values kept.
    left, values, right = torch.linalg.svd(merged, full_matrices=False)
    torch.testing.assert_close(values, values.mean().expand(10))
    total_left, total_values, _ = torch.linalg.svd(sum(vector["layer.weight"] for vector in vectors), full_matrices=False)
    common = total_left[:, :4]
    torch.testing.assert_close(left @ left.T @ common, common)  # the common subspace is kept
    task_values = []
    for vector in vectors:
        residual = vector["layer.weight"] - common @ common.T @ vector["layer.weight"]
        task_values.append(torch.linalg.svdvals(residual)[:2])
    expected_mean = torch.cat([total_values[:4], *task_values]).mean()
    torch.testing.assert_close(values.mean(), expected_mean)


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("tie", {}, r"Unknown merging method 'tie' \(did you mean 'ties'"),
        ("ties", {"densty": 0.2}, r"Unknown option 'densty' for the merging method 'ties' \(did you mean 'density'"),
        ("ties", {"density": 0.0}, r"density is the share of each task vector's entries kept, in \(0, 1\], got 0.0"),
        ("dare_linear", {"density": 1.5}, r"in \(0, 1\], got 1.5"),
        ("task_arithmetic", {"weights": [1.0]}, r"weights gives 1 value\(s\) for 2 task vectors"),
        ("ties", {"majority_sign_method": "vote"}, r"majority_sign_method is 'total' or 'frequency', got 'vote'"),
        ("iso_cts", {"common_space_fraction": 2}, r"common_space_fraction is in \[0, 1\], got 2"),
    ],
)
def test_bad_methods_and_options_are_named(method, options, message):
    with pytest.raises(ValueError, match=message):
        merge_task_vectors(task_vectors(count=2), method, options)


def test_task_vectors_that_cannot_be_merged_entry_by_entry_are_refused():
    first, second = task_vectors(count=2)
    with pytest.raises(ValueError, match="Nothing to merge"):
        merge_task_vectors([], "ties")
    with pytest.raises(ValueError, match=r"'layer.weight' has shape \[12, 9\] in task vector 1 and \[12, 10\] in task vector 0"):
        merge_task_vectors([first, {**second, "layer.weight": second["layer.weight"][:, :9]}], "task_arithmetic")
    with pytest.raises(ValueError, match=r"Task vector 1 does not match task vector 0: it lacks \['layer.bias'\]"):
        merge_task_vectors([first, {"layer.weight": second["layer.weight"]}], "task_arithmetic")
    with pytest.raises(ValueError, match=r"'layer.bias' of task vector 1 holds NaN or inf"):
        merge_task_vectors([first, {**second, "layer.bias": second["layer.bias"] * float("nan")}], "iso_c")
    with pytest.raises(ValueError, match=r"'layer.bias' of task vector 0 is torch.int64, not a floating-point tensor"):
        merge_task_vectors([{**first, "layer.bias": torch.ones(12, dtype=torch.long)}], "task_arithmetic")


def test_merging_keeps_the_task_vectors_dtype():
    vectors = [{name: tensor.to(torch.bfloat16) for name, tensor in vector.items()} for vector in task_vectors(count=2)]
    for method in ("task_arithmetic", "ties", "iso_c", "iso_cts"):
        merged = merge_task_vectors(vectors, method)
        assert {tensor.dtype for tensor in merged.values()} == {torch.bfloat16}, method
