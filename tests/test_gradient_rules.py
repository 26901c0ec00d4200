"""The gradient-combination rules against their papers' conditions, on constructed task gradients: each rule
sees only the Gram matrix and returns the coefficients of the update over the original gradients."""

import pytest
import torch

from moezoo.balancing import (
    aligned_mtl_balance,
    aligned_mtl_weights,
    cagrad_weights,
    imtl_g_weights,
    mgda_weights,
    nash_mtl_weights,
    pcgrad_weights,
    two_task_min_norm,
)


def gradients(num_tasks=4, size=9, seed=0):
    """Task gradients with conflicts: a common part, a task-specific part of varied scale."""
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(size, generator=generator, dtype=torch.float64)
    scales = torch.linspace(0.5, 3.0, num_tasks, dtype=torch.float64)[:, None]
    return 0.3 * common + scales * torch.randn(num_tasks, size, generator=generator, dtype=torch.float64)


def simplex_points(num_tasks, count=2000, seed=1):
    """Points drawn uniformly from the simplex."""
    draws = -torch.rand(count, num_tasks, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).log()
    return draws / draws.sum(1, keepdim=True)


def test_two_task_mgda_is_the_closed_form_minimum_norm_point():
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-0.5, 2.0], dtype=torch.float64)
    G = torch.stack([g1, g2])
    gamma, rest = two_task_min_norm(G @ G.T)
    expected = ((g2 - g1) @ g2 / (g1 - g2).square().sum()).clamp(0, 1)
    assert gamma.item() == pytest.approx(expected.item()) and (gamma + rest).item() == pytest.approx(1.0)
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    norms = (grid[:, None] * g1 + (1 - grid[:, None]) * g2).norm(dim=1)
    assert gamma.item() == pytest.approx(grid[norms.argmin()].item(), abs=1e-5)
    # A gradient that already lies in the other's direction beyond it: the clip at the simplex's edge.
    assert two_task_min_norm(torch.tensor([[1.0, 2.0], [2.0, 4.0]])).tolist() == [1.0, 0.0]


def test_mgda_finds_the_minimum_norm_point_of_the_simplex():
    G = gradients(num_tasks=5)
    gram = G @ G.T
    alpha = mgda_weights(gram)
    assert alpha.min() >= 0 and alpha.sum().item() == pytest.approx(1.0)
    value = alpha @ gram @ alpha
    # Optimality on the simplex: no vertex direction lowers the norm ((M α)_k >= αᵀ M α), with equality on the support.
    products = gram @ alpha
    assert (products >= value - 1e-7 * value).all()
    assert torch.allclose(products[alpha > 1e-6], value, rtol=1e-5)
    assert (simplex_points(5).mul(simplex_points(5) @ gram).sum(1) >= value - 1e-12).all()


def test_pcgrad_projects_each_gradient_off_the_ones_it_conflicts_with():
    G = gradients(num_tasks=3, seed=3)
    gram = G @ G.T
    assert (gram < 0).any()  # the construction has conflicts
    alpha = pcgrad_weights(gram, torch.Generator().manual_seed(7))
    # The paper's algorithm on the vectors themselves, in the same random orders.
    generator = torch.Generator().manual_seed(7)
    projected = []
    for task in range(3):
        g = G[task].clone()
        for other in torch.randperm(3, generator=generator).tolist():
            if other != task and g @ G[other] < 0:
                g = g - (g @ G[other]) / (G[other] @ G[other]) * G[other]
        projected.append(g)
    torch.testing.assert_close(alpha @ G, torch.stack(projected).sum(0))
    # Two tasks in conflict: each projected gradient is orthogonal to the other's.
    two = torch.stack([torch.tensor([1.0, 0.2], dtype=torch.float64), torch.tensor([-1.0, 1.0], dtype=torch.float64)])
    coefficients = pcgrad_weights(two @ two.T)
    first = two[0] - (two[0] @ two[1]) / (two[1] @ two[1]) * two[1]
    second = two[1] - (two[1] @ two[0]) / (two[0] @ two[0]) * two[0]
    assert abs(first @ two[1]) < 1e-12 and abs(second @ two[0]) < 1e-12
    torch.testing.assert_close(coefficients @ two, first + second)
    # No conflict: the plain sum.
    aligned = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pcgrad_weights(aligned @ aligned.T), torch.ones(2, dtype=torch.float64))


def test_imtl_g_gives_every_task_the_same_projection():
    G = gradients(num_tasks=4, seed=5)
    alpha = imtl_g_weights(G @ G.T)
    assert alpha.sum().item() == pytest.approx(1.0)
    update = alpha @ G
    projections = (G / G.norm(dim=1, keepdim=True)) @ update
    torch.testing.assert_close(projections, projections[0].expand(4), rtol=1e-9, atol=1e-9)


def test_aligned_mtl_equalises_the_singular_values_at_the_smallest():
    G = gradients(num_tasks=4, seed=6)
    balance = aligned_mtl_balance(G @ G.T)
    singular = torch.linalg.svdvals(G)
    torch.testing.assert_close(torch.linalg.svdvals(balance @ G), singular.min().expand(4), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(aligned_mtl_weights(G @ G.T), balance.sum(0))
    # Rank-deficient gradients (one task repeats another): the smallest non-zero singular value is kept.
    repeated = torch.cat([G[:2], G[:1]])
    aligned = aligned_mtl_balance(repeated @ repeated.T) @ repeated
    nonzero = torch.linalg.svdvals(repeated)[:2]
    torch.testing.assert_close(torch.linalg.svdvals(aligned)[:2], nonzero.min().expand(2), rtol=1e-6, atol=1e-9)


def test_nash_mtl_solves_the_bargaining_condition():
    G = gradients(num_tasks=4, seed=8)
    gram = G @ G.T
    alpha = nash_mtl_weights(gram, normalize_gram=False)
    assert (alpha > 0).all()
    assert torch.linalg.vector_norm(gram @ alpha - 1 / alpha) < 1e-8
    # The authors' code solves with M / ‖M‖_F: its alpha is √‖M‖_F times the paper's.
    torch.testing.assert_close(nash_mtl_weights(gram), alpha * torch.linalg.matrix_norm(gram).sqrt(), rtol=1e-8, atol=0)
    # Orthogonal gradients: α_k = 1 / ‖g_k‖.
    orthogonal = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(nash_mtl_weights(orthogonal @ orthogonal.T, normalize_gram=False),
                               torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    # A task whose gradient vanished takes no part.
    zero = torch.cat([G[:2], torch.zeros(1, G.shape[1], dtype=torch.float64)])
    weights = nash_mtl_weights(zero @ zero.T, normalize_gram=False)
    assert weights[2] == 0 and torch.linalg.vector_norm((zero @ zero.T)[:2, :2] @ weights[:2] - 1 / weights[:2]) < 1e-8


def test_cagrad_solves_its_subproblem_and_steps_as_the_authors_code():
    G = gradients(num_tasks=3, seed=9)
    gram = G @ G.T
    c = 0.4
    mean = torch.full((3,), 1 / 3, dtype=torch.float64)
    radius = c * torch.sqrt(mean @ gram @ mean)

    def subproblem(w):
        return w @ gram @ mean + radius * torch.sqrt(torch.einsum("...i,ij,...j->...", w, gram, w))

    alpha = cagrad_weights(gram, c=c, rescale=0)
    # α = 1/K + (√φ / ‖g_w‖) w: recover w and check it is the subproblem's minimum over the simplex.
    w = alpha - mean
    w = w / w.sum()
    assert w.min() >= -1e-12
    assert subproblem(w) <= subproblem(simplex_points(3)).min() + 1e-6
    torch.testing.assert_close((alpha - mean) @ G, radius / torch.sqrt(w @ gram @ w) * (w @ G))
    torch.testing.assert_close(cagrad_weights(gram, c=c), alpha / (1 + c**2))
    torch.testing.assert_close(cagrad_weights(gram, c=c, rescale=2), alpha / (1 + c))
    torch.testing.assert_close(cagrad_weights(gram, c=0.0), mean)  # c = 0: the mean gradient


@pytest.mark.parametrize("second", ["random", "conflicting", "opposite"])
def test_cagrad_two_task_subproblem_is_solved_exactly(second):
    """Two tasks take a closed-form path: its w must be the minimum of the subproblem on a fine grid of the
    segment, including where the gradients conflict and where g_w can vanish."""
    G = gradients(num_tasks=2, seed=10)
    G[1] = {"random": G[1], "conflicting": -0.8 * G[0] + 0.3 * G[1], "opposite": -0.5 * G[0]}[second]
    gram = G @ G.T
    c = 0.4
    mean = torch.full((2,), 0.5, dtype=torch.float64)
    radius = c * torch.sqrt(mean @ gram @ mean)
    alpha = cagrad_weights(gram, c=c, rescale=0)
    w = (alpha - mean) / (alpha - mean).sum()
    s = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    segment = torch.stack([s, 1 - s], 1)

    def subproblem(w):
        return w @ gram @ mean + radius * torch.einsum("...i,ij,...j->...", w, gram, w).clamp_min(0).sqrt()

    assert w.min() >= 0
    assert subproblem(w) <= subproblem(segment).min() + 1e-12 * gram.diagonal().max()


def test_rules_refuse_a_gram_matrix_that_is_not_one():
    with pytest.raises(ValueError, match=r"A Gram matrix is \[K, K\] with K >= 1, got \[2, 3\]"):
        mgda_weights(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="a task's gradient is not finite"):
        pcgrad_weights(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="CAGrad's rescale is 0, 1 or 2, got 3"):
        cagrad_weights(torch.eye(2), rescale=3)
    for rule in (mgda_weights, pcgrad_weights, imtl_g_weights, aligned_mtl_weights, nash_mtl_weights, cagrad_weights):
        assert rule(torch.tensor([[4.0]])).shape == (1,)
