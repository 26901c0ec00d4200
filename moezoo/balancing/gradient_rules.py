"""How the gradient-based multi-task methods combine the tasks' gradients, from their Gram matrix alone.

Every rule here reads the ``[K, K]`` Gram matrix ``M = G Gᵀ`` of the ``K`` task gradients (the rows of
``G``, over the shared parameters or over a shared representation) and returns the coefficients ``α``
``[K]`` of the combined update ``d = Σ_k α_k g_k = αᵀ G``. PCGrad's projections, CAGrad's conflict-averse
step, IMTL-G's equal projections, Aligned-MTL's rescaled singular values and Nash-MTL's bargaining solution
are all such combinations, and their conditions involve the gradients only through dot products. So a
rule costs ``O(K³)`` whatever the number of parameters, and under data parallelism it needs only the
all-reduced Gram matrix, the same on every process; the update ``αᵀ G`` is formed once.

The rules compute in float64 on the CPU (``K x K`` matrices: a GPU would only add a launch per tiny
operation, and the solvers' optimality conditions then hold to ~1e-10). The iterative ones (CAGrad's
subproblem, Nash-MTL) are Newton methods that converge in tens of steps rather than first-order methods
that take hundreds, because on a small model the solver, not the backward pass, sets the step time.
"""

from __future__ import annotations

import torch

#: Gradient norms below this count as zero (a task whose gradient vanished takes no part in a rule
#: that divides by norms).
NORM_EPS = 1e-12


def _as_gram(gram: torch.Tensor) -> torch.Tensor:
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"A Gram matrix is [K, K] with K >= 1, got {list(gram.shape)}.")
    if not torch.isfinite(gram).all():
        raise ValueError("The task gradients' Gram matrix holds NaN or inf: a task's gradient is not finite.")
    return gram.detach().double().cpu()


def two_task_min_norm(gram: torch.Tensor) -> torch.Tensor:
    """The closed-form MGDA solution for two tasks (Sener & Koltun 2018, Algorithm 1): the weight ``γ`` of
    the first gradient in ``min_γ ‖γ g₁ + (1 - γ) g₂‖²``, ``γ = clip((g₂ - g₁)·g₂ / ‖g₁ - g₂‖², 0, 1)``;
    returns ``[γ, 1 - γ]``."""
    gram = _as_gram(gram)
    if gram.shape[0] != 2:
        raise ValueError(f"two_task_min_norm takes two tasks, got {gram.shape[0]}.")
    difference = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]  # ‖g₁ - g₂‖²
    if difference <= NORM_EPS:
        return gram.new_tensor([0.5, 0.5])
    gamma = ((gram[1, 1] - gram[0, 1]) / difference).clamp(0.0, 1.0)
    return torch.stack([gamma, 1 - gamma])


def mgda_weights(gram: torch.Tensor, max_iterations: int = 250, tolerance: float = 1e-10) -> torch.Tensor:
    """MGDA (Sener & Koltun 2018): the point of the simplex whose combination of the gradients has the
    least norm, ``argmin_{α ∈ Δ} αᵀ M α``; the common descent direction of every task when it is not zero.

    Two tasks are solved in closed form (`two_task_min_norm`); more by Frank-Wolfe from the best pair, each
    step an exact line search between the iterate and the simplex vertex of least ``(M α)_k``, as the paper's
    Algorithm 2. Stops when a step moves ``α`` by less than ``tolerance``.
    """
    gram = _as_gram(gram)
    num_tasks = gram.shape[0]
    if num_tasks == 1:
        return gram.new_ones(1)
    if num_tasks == 2:
        return two_task_min_norm(gram)
    # Start from the best pair's solution (as the paper's solver does).
    best = None
    for first in range(num_tasks):
        for second in range(first + 1, num_tasks):
            pair = [first, second]
            weights = two_task_min_norm(gram[pair][:, pair])
            value = weights @ gram[pair][:, pair] @ weights
            if best is None or value < best[0]:
                best = (value, pair, weights)
    alpha = gram.new_zeros(num_tasks)
    alpha[best[1]] = best[2]
    for _ in range(max_iterations):
        vertex = int(torch.argmin(gram @ alpha))
        # Exact line search on the segment from alpha to the vertex: the two-point problem between the
        # current combination d = αᵀG and the vertex's gradient.
        d_d = alpha @ gram @ alpha
        d_v = (gram @ alpha)[vertex]
        v_v = gram[vertex, vertex]
        step = two_task_min_norm(torch.stack([torch.stack([v_v, d_v]), torch.stack([d_v, d_d])]))[0]
        updated = (1 - step) * alpha
        updated[vertex] += step
        moved = (updated - alpha).abs().sum()
        alpha = updated
        if moved < tolerance:
            break
    return alpha


def pcgrad_weights(gram: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad (Yu et al. 2020, Algorithm 1): each task's gradient, in a random order of the others, loses
    its projection on every other task's original gradient it conflicts with (negative dot product); the
    update is the sum of the projected gradients. Each projected gradient is tracked as its coefficients
    over the original gradients, so the result is the coefficient of each original gradient in that sum.

    ``generator`` draws the orders (seed it identically on every process: the orders must agree).
    """
    gram = _as_gram(gram)
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gram.dtype)  # row i: the projected g_i over the original g's
    for task in range(num_tasks):
        for other in torch.randperm(num_tasks, generator=generator).tolist():
            if other == task or gram[other, other] <= NORM_EPS:
                continue
            dot = coefficients[task] @ gram[:, other]
            if dot < 0:
                coefficients[task, other] -= dot / gram[other, other]
    return coefficients.sum(0)


def _minimize_on_simplex(
    value, gradient_and_hessian, num_tasks: int, gap: float = 1e-10, newton_tolerance: float = 1e-12
) -> torch.Tensor:
    """Minimise a smooth convex ``f(α)`` (of order one) on the simplex by the log-barrier method: Newton
    steps (the equality ``Σ α = 1`` eliminated; backtracking inside ``α > 0``) on ``t f(α) - Σ log α`` for
    ``t = 1, 100, 10⁴, ...`` until the duality gap ``K / t`` is below ``gap``. ``value(α)`` is ``f(α)``;
    ``gradient_and_hessian(α)`` its gradient and Hessian."""
    alpha = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
    ones = torch.ones(num_tasks, dtype=torch.float64)
    t = 1.0
    while True:
        current = t * value(alpha) - torch.log(alpha).sum()
        for _ in range(50):
            gradient, hessian = gradient_and_hessian(alpha)
            gradient = t * gradient - 1.0 / alpha
            hessian = t * hessian + torch.diag(1.0 / alpha**2)
            # The Newton step on {Σ α = 1}: -H⁻¹(g + ν 1) with ν making its entries sum to zero.
            solved = torch.linalg.solve(hessian, torch.stack([gradient, ones], 1))
            step = solved[:, 0].sum() / solved[:, 1].sum() * solved[:, 1] - solved[:, 0]
            decrement = -(gradient @ step)
            if decrement / 2 <= newton_tolerance:
                break
            size = 1.0
            while size > 1e-10:
                candidate = alpha + size * step
                if (candidate > 0).all():
                    candidate_value = t * value(candidate) - torch.log(candidate).sum()
                    if candidate_value <= current - 0.25 * size * decrement:
                        break
                size /= 2
            if size <= 1e-10:  # no decrease left at float64's precision
                break
            alpha, current = candidate, candidate_value
        if num_tasks / t < gap:
            return alpha
        t *= 100.0


def _cagrad_two_tasks(gram: torch.Tensor, linear: torch.Tensor, radius: float) -> torch.Tensor:
    """CAGrad's subproblem for two tasks, exactly: with ``w = (s, 1 - s)``, ``‖g_w‖² = A s² + B s + C``
    and ``f(s) = β s + r √(A s² + B s + C)`` up to a constant; the minimum over ``[0, 1]`` is at an end or
    where ``f'`` vanishes, a root of ``4A(r²A - β²) s² + 4B(r²A - β²) s + r²B² - 4β²C`` (``f'(s) = 0``
    squared); ``f`` is convex, so the best of these candidates is the minimum."""
    (m11, m12), (_, m22) = gram.tolist()
    big_a, big_b, big_c = m11 - 2 * m12 + m22, 2 * (m12 - m22), m22
    beta = (linear[0] - linear[1]).item()
    common = radius**2 * big_a - beta**2
    a, b, c = 4 * big_a * common, 4 * big_b * common, radius**2 * big_b**2 - 4 * beta**2 * big_c
    candidates = [0.0, 1.0]
    if abs(a) > 1e-15:
        discriminant = b * b - 4 * a * c
        if discriminant >= 0:
            candidates += [(-b + sign * discriminant**0.5) / (2 * a) for sign in (1, -1)]
    elif abs(b) > 1e-15:
        candidates.append(-c / b)

    def objective(s: float) -> float:
        return beta * s + radius * max(big_a * s * s + big_b * s + big_c, 0.0) ** 0.5

    best = min((s for s in candidates if 0.0 <= s <= 1.0), key=objective)
    return torch.tensor([best, 1.0 - best], dtype=torch.float64)


def cagrad_weights(gram: torch.Tensor, c: float = 0.4, rescale: int = 1) -> torch.Tensor:
    """CAGrad (Liu et al. 2021), as the authors' code computes it: with ``g₀`` the mean gradient and
    ``φ = c²‖g₀‖²``, find ``w ∈ Δ`` minimising ``g_wᵀ g₀ + √φ ‖g_w‖`` (``g_w = Σ w_k g_k``), then step along
    ``d = g₀ + (√φ / ‖g_w‖) g_w``, divided by ``1 + c²`` (``rescale=1``, their default), ``1 + c``
    (``rescale=2``) or not at all (``rescale=0``). ``c = 0`` is the mean gradient.
    """
    gram = _as_gram(gram)
    if rescale not in (0, 1, 2):
        raise ValueError(f"CAGrad's rescale is 0, 1 or 2, got {rescale}.")
    if c < 0:
        raise ValueError(f"CAGrad's c must be >= 0, got {c}.")
    num_tasks = gram.shape[0]
    mean = gram.new_full((num_tasks,), 1.0 / num_tasks)
    radius = c * torch.sqrt(mean @ gram @ mean).clamp_min(0)  # √φ = c ‖g₀‖
    alpha = mean.clone()
    if radius > NORM_EPS:
        # The minimiser does not change when M is scaled; scaled to a unit diagonal maximum, f is of order one.
        scale = gram.diagonal().max()
        scaled_gram, scaled_radius = gram / scale, radius / scale.sqrt()
        linear = scaled_gram @ mean  # f(w) = wᵀ M g₀ + √φ ‖g_w‖, on the scaled M
        if num_tasks == 2:
            w = _cagrad_two_tasks(scaled_gram, linear, scaled_radius.item())
        else:
            def value(w: torch.Tensor) -> torch.Tensor:
                return w @ linear + scaled_radius * torch.sqrt((w @ scaled_gram @ w).clamp_min(NORM_EPS))

            def gradient_and_hessian(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                towards = scaled_gram @ w
                norm = torch.sqrt((w @ towards).clamp_min(NORM_EPS))  # ‖g_w‖
                hessian = scaled_radius * (scaled_gram / norm - torch.outer(towards, towards) / norm**3)
                return linear + scaled_radius * towards / norm, hessian

            w = _minimize_on_simplex(value, gradient_and_hessian, num_tasks)
        norm = torch.sqrt((w @ gram @ w).clamp_min(NORM_EPS))
        alpha = alpha + radius / norm * w
    return alpha / {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[rescale]


def imtl_g_weights(gram: torch.Tensor) -> torch.Tensor:
    """IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"): the combination ``d = αᵀ G``
    with ``Σ α = 1`` whose projections on the tasks' unit gradients are all equal,
    ``α₂..K = g₁ Uᵀ (D Uᵀ)⁻¹`` with ``D`` the rows ``g₁ - g_k``, ``U`` the rows ``u₁ - u_k`` (``u = g/‖g‖``),
    ``α₁ = 1 - Σ α₂..K``."""
    gram = _as_gram(gram)
    num_tasks = gram.shape[0]
    if num_tasks == 1:
        return gram.new_ones(1)
    norms = torch.sqrt(gram.diagonal().clamp_min(NORM_EPS))
    gram_unit = gram / norms[None, :]  # [i, j] = g_i · u_j
    # (g_1 - g_i) · (u_1 - u_j) and g_1 · (u_1 - u_j), for i, j in 2..K.
    first_minus = gram_unit[0:1, :] - gram_unit  # [i, j] = (g_1 - g_i) · u_j
    d_u = first_minus[1:, 0:1] - first_minus[1:, 1:]
    g_u = gram_unit[0, 0] - gram_unit[0, 1:]
    rest = torch.linalg.lstsq(d_u.T, g_u[:, None]).solution[:, 0]  # solves rest @ d_u = g_u
    return torch.cat([1 - rest.sum().reshape(1), rest])


def aligned_mtl_balance(gram: torch.Tensor) -> torch.Tensor:
    """Aligned-MTL's ``[K, K]`` balance matrix (Senushkin et al. 2023), as the authors' code computes it:
    with ``M = V Λ Vᵀ`` (the eigenvalues above the rank tolerance ``λ_max · K · ε``),
    ``B = √λ_min V Λ^(-1/2) Vᵀ``, so that the aligned gradients ``B G`` have every singular value equal to
    the smallest non-zero one of ``G``."""
    gram = _as_gram(gram)
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    tolerance = eigenvalues.max().clamp_min(0) * gram.shape[0] * torch.finfo(torch.float32).eps
    keep = eigenvalues > tolerance
    if not keep.any():
        return torch.zeros_like(gram)
    eigenvalues, eigenvectors = eigenvalues[keep], eigenvectors[:, keep]
    return eigenvalues.min().sqrt() * (eigenvectors / eigenvalues.sqrt()) @ eigenvectors.T


def aligned_mtl_weights(gram: torch.Tensor) -> torch.Tensor:
    """Aligned-MTL's coefficients: the sum of the aligned gradients, ``α = B 1`` (`aligned_mtl_balance`)."""
    return aligned_mtl_balance(gram).sum(0)


def nash_mtl_weights(
    gram: torch.Tensor, normalize_gram: bool = True, max_iterations: int = 100, tolerance: float = 1e-20
) -> torch.Tensor:
    """Nash-MTL (Navon et al. 2022): the bargaining solution ``α > 0`` with ``M α = 1 / α``
    (elementwise), solved in torch as the minimum of the strictly convex ``½ αᵀ M α - Σ log α``, whose
    gradient is that condition, by damped Newton steps kept inside ``α > 0``.

    ``normalize_gram`` solves with ``M / ‖M‖_F`` as the authors' code does (their ``α`` is then
    ``√‖M‖_F`` times the paper's, a larger step); ``False`` gives the paper's ``α``. Tasks whose
    gradient is zero get ``α = 0`` (the condition has no finite solution for them).
    """
    gram = _as_gram(gram)
    alpha = gram.new_zeros(gram.shape[0])
    active = gram.diagonal() > NORM_EPS
    if not active.any():
        return alpha
    matrix = gram[active][:, active]
    if normalize_gram:
        matrix = matrix / torch.linalg.matrix_norm(matrix)
    x = 1.0 / torch.sqrt(matrix.diagonal())  # exact when the gradients are orthogonal

    # The objective is self-concordant (a convex quadratic minus logarithms), so the damped Newton step
    # 1 / (1 + λ) stays inside α > 0 and decreases it without a line search, and the full step converges
    # quadratically once the Newton decrement λ is small.
    for _ in range(max_iterations):
        gradient = matrix @ x - 1.0 / x
        step = torch.linalg.solve(matrix + torch.diag(1.0 / x**2), gradient)
        decrement = gradient @ step  # λ²
        if decrement / 2 < tolerance:
            break
        x = x - step / (1.0 + decrement.sqrt()) if decrement > 0.0625 else x - step
    alpha[active] = x
    return alpha
