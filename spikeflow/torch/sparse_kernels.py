"""Private numba kernels for dense layers fed by sparse (spiking) inputs.

A spike matrix ``x[M, K]`` (M = T*B samples) is compressed to CSR rows once; the forward product
``x @ W.T`` and the weight gradient ``x.T @ g`` then cost work proportional to the number of
spikes instead of ``M*K``. Both products walk column tiles of the dense operand so that the tile
stays in cache while the sparse rows stream past; rows (forward) or tiles (weight gradient) run in
parallel without write conflicts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_FLAGS = dict(cache=True, nogil=True, parallel=True, error_model="numpy")
TILE = 128  # output columns per tile: 512 B of float32, a few cache lines per row
ROWS = 32  # sample rows per parallel block in the forward product


@njit(**_FLAGS)
def dense_to_csr(x):
    """CSR (indptr, indices, values) of the non-zero entries of ``x[M, K]``."""
    M, K = x.shape
    counts = np.zeros(M + 1, dtype=np.int64)
    for r in prange(M):
        row = x[r]
        c = 0
        for k in range(K):
            if row[k] != 0:
                c += 1
        counts[r + 1] = c
    indptr = np.cumsum(counts)
    indices = np.empty(indptr[M], dtype=np.int32)
    values = np.empty(indptr[M], dtype=x.dtype)
    for r in prange(M):
        row = x[r]
        p = indptr[r]
        for k in range(K):
            if row[k] != 0:
                indices[p] = k
                values[p] = row[k]
                p += 1
    return indptr, indices, values


@njit(**_FLAGS)
def csr_matmul(indptr, indices, values, wt, bias, use_bias, out):
    """``out[M, N] = bias + X @ wt`` for CSR ``X[M, K]`` and dense ``wt[K, N]``."""
    M, N = out.shape
    blocks = (M + ROWS - 1) // ROWS
    for blk in prange(blocks):
        r_end = min(M, (blk + 1) * ROWS)
        for j0 in range(0, N, TILE):
            j1 = min(N, j0 + TILE)
            for r in range(blk * ROWS, r_end):
                o = out[r]
                for j in range(j0, j1):
                    o[j] = bias[j] if use_bias else 0
                for p in range(indptr[r], indptr[r + 1]):
                    w = wt[indices[p]]
                    v = values[p]
                    for j in range(j0, j1):
                        o[j] += v * w[j]


@njit(**_FLAGS)
def csr_t_matmul(indptr, indices, values, g, out):
    """``out[K, N] = X.T @ g`` for CSR ``X[M, K]`` and dense ``g[M, N]`` (``out`` zeroed here)."""
    M, N = g.shape
    tiles = (N + TILE - 1) // TILE
    for tile in prange(tiles):
        j0 = tile * TILE
        j1 = min(N, j0 + TILE)
        for k in range(out.shape[0]):
            for j in range(j0, j1):
                out[k, j] = 0
        for r in range(M):
            gr = g[r]
            for p in range(indptr[r], indptr[r + 1]):
                o = out[indices[p]]
                v = values[p]
                for j in range(j0, j1):
                    o[j] += v * gr[j]


@njit(cache=True, nogil=True, error_model="numpy")
def sampled_density(x, stride):
    """Fraction of non-zeros in every ``stride``-th row of ``x[M, K]`` (a cheap estimate)."""
    M, K = x.shape
    nz, rows = 0, 0
    for r in range(0, M, stride):
        rows += 1
        row = x[r]
        for k in range(K):
            if row[k] != 0:
                nz += 1
    return nz / max(1, rows * K)
