"""Slow, obvious reference of the closed-form linear probe (:func:`spikeflow.models.readout.ridge_fit`
and ``train_readout(method="ridge")``): standardise, then for every penalty build the augmented
normal equations and the hat matrix explicitly and score generalised cross-validation."""

import numpy as np


def standardise(x):
    """Per-feature mean and (population) standard deviation plus 1e-3, as the readouts use."""
    x = np.asarray(x, dtype=np.float64)
    n, f = x.shape
    mean = np.array([sum(x[i, j] for i in range(n)) / n for j in range(f)])
    std = np.array([np.sqrt(sum((x[i, j] - mean[j]) ** 2 for i in range(n)) / n) for j in range(f)]) + 1e-3
    return mean, std


def ridge_gcv(x, targets, grid):
    """``(W [F, C], b [C], alpha)``: for each ``alpha = g * trace(Xc^T Xc) / F`` over ``grid`` solve
    ``[1 X]^T [1 X] + diag(0, alpha, ...)`` for the weights (the intercept unpenalised), form the
    hat matrix ``H`` and score ``GCV = N |Y - H Y|^2 / (N - trace H)^2``; keep the lowest."""
    x, y = np.asarray(x, np.float64), np.asarray(targets, np.float64)
    n, f = x.shape
    design = np.hstack([np.ones((n, 1)), x])
    centred = x - x.mean(0)
    scale = np.trace(centred.T @ centred) / f
    best = None
    for g in grid:
        alpha = g * scale
        penalty = alpha * np.eye(f + 1)
        penalty[0, 0] = 0.0
        inverse = np.linalg.inv(design.T @ design + penalty)
        hat = design @ inverse @ design.T
        residual = y - hat @ y
        gcv = n * np.sum(residual**2) / (n - np.trace(hat)) ** 2
        if best is None or gcv < best[0]:
            coef = inverse @ design.T @ y
            best = (gcv, coef[1:], coef[0], alpha)
    return best[1], best[2], best[3]
