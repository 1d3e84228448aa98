"""Private numba kernel behind :func:`spikeflow.models.lsm.reservoir_features`.

A reservoir's readout features need only spike counts per time window and a decaying trace, never
the spikes themselves, so each sample runs on its own, event by event: per step the membrane
drive is the bias plus the input-weight row of every active input and the recurrent-weight row of
every neuron that fired in the previous step (about 90 rows of 200 for DigitSaccades, instead of a
dense product over all 578 inputs and 200 neurons), and each spike adds to its features in place.
Samples are independent and each is summed by one thread in a fixed order, so results do not
depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spikeflow._threads import announce_first_compile


@njit(cache=True, parallel=True)
def run_features(x, w_in, w_rec, bias, a, threshold, v_reset, zero_reset, window_of, trace_weight, out):
    """Features ``out[B, (windows + 1 or windows) * H]`` (zeroed by the caller) of a reservoir driven by
    ``x[T, B, n_in]``: counts in window ``window_of[t]``, then (if ``trace_weight`` is not empty) the
    trace ``sum_t trace_weight[t] z_t``. ``w_in[n_in, H]`` and ``w_rec[H, H]`` are transposed and
    scaled by the input gain; the LIF step is ``u = bias + drive + a v``, spike where ``u > threshold``."""
    steps, n, n_in = x.shape
    size = w_in.shape[1]
    traced = trace_weight.shape[0] > 0
    n_windows = out.shape[1] // size - traced
    for s in prange(n):
        v = np.zeros_like(bias)
        u = np.empty_like(bias)
        z = np.zeros(size, dtype=out.dtype)
        fired = np.empty(size, dtype=np.int64)
        n_fired = 0
        for t in range(steps):
            for j in range(size):
                u[j] = bias[j]
            for k in range(n_in):
                xk = x[t, s, k]
                if xk != 0:
                    for j in range(size):
                        u[j] += xk * w_in[k, j]
            for q in range(n_fired):
                row = fired[q]
                for j in range(size):
                    u[j] += w_rec[row, j]
            # branch-free update (a fifth of the neurons fire, unpredictably), then the spike list
            for j in range(size):
                uj = u[j] + a[j] * v[j]
                spike = uj > threshold[j]
                v[j] = (v_reset[j] if zero_reset else uj - threshold[j]) if spike else uj
                z[j] = 1 if spike else 0
            count = window_of[t] * size
            for j in range(size):
                out[s, count + j] += z[j]
            if traced:
                for j in range(size):
                    out[s, n_windows * size + j] += trace_weight[t] * z[j]
            n_fired = 0
            for j in range(size):
                fired[n_fired] = j
                n_fired += z[j] > 0


announce_first_compile(globals())
