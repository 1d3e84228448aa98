"""Loop-by-loop NumPy reference of the Oja subspace update of :class:`spikeflow.continual.hlop.Subspace`."""

import numpy as np


def oja_update(frozen, new, x, lr, iterations, levels=None):
    """One batch of Oja subspace updates of the ``new`` rows, written one sum at a time.

    ``y_i = sum_j x_j h_ij`` (rounded to multiples of 1/levels for spiking neurons); the frozen
    neurons' share ``sum_f y_f h_f`` is removed from the input once, then per iteration
    ``h_ij += eta / B * sum_b y_bi (x_bj - sum_m y_bm h_mj)`` with ``eta = lr / mean_b |x_b|^2``.
    """
    frozen, new, x = (np.array(a, dtype=np.float64) for a in (frozen, new, x))
    batch, n = x.shape
    power = 0.0
    for b in range(batch):
        for j in range(n):
            power += x[b, j] ** 2
    power /= batch
    if power == 0.0:
        return new
    eta = lr / power

    def respond(row_vec, h):
        y = 0.0
        for j in range(n):
            y += row_vec[j] * h[j]
        return np.round(y * levels) / levels if levels is not None else y

    base = x.copy()
    for b in range(batch):
        for f in range(frozen.shape[0]):
            y = respond(x[b], frozen[f])
            for j in range(n):
                base[b, j] -= y * frozen[f, j]
    for _ in range(iterations):
        y = np.zeros((batch, new.shape[0]))
        for b in range(batch):
            for i in range(new.shape[0]):
                y[b, i] = respond(x[b], new[i])
        delta = np.zeros_like(new)
        for b in range(batch):
            err = base[b].copy()
            for m in range(new.shape[0]):
                for j in range(n):
                    err[j] -= y[b, m] * new[m, j]
            for i in range(new.shape[0]):
                for j in range(n):
                    delta[i, j] += y[b, i] * err[j]
        new = new + eta / batch * delta
    return new
