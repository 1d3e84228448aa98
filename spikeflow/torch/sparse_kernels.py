"""Private numba kernels for dense layers fed by sparse (spiking) inputs.

A spike matrix ``x[M, K]`` (M = T*B samples) is compressed to CSR rows once; the forward product
``x @ W.T`` and the weight gradient ``x.T @ g`` then cost work proportional to the number of
spikes instead of ``M*K``. Both products walk column tiles of the dense operand so that the tile
stays in cache while the sparse rows stream past; rows (forward) or tiles (weight gradient) are
independent and run in parallel without write conflicts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spikeflow._threads import announce_first_compile

# Rows (forward) and column tiles (weight gradient) are independent and each is summed by one thread
# in a fixed order, so results do not depend on the thread count.
_FLAGS = dict(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"contract"})
TILE = 1024  # output columns per tile of the forward product (per-non-zero overhead favours long rows)
ROWS = 8  # sample rows per parallel block in the forward product
ROWS_CSR = 64  # rows per parallel block of dense_to_csr (each block allocates one scratch row)


@njit(**_FLAGS)
def dense_to_csr(x):
    """CSR (indptr, indices, values, binary) of the non-zeros of ``x[M, K]``; ``binary``: all ones."""
    M, K = x.shape
    counts = np.zeros(M + 1, dtype=np.int64)
    ones = np.zeros(M, dtype=np.int64)
    for r in prange(M):
        row = x[r]
        c = 0
        o = 0
        for k in range(K):
            c += row[k] != 0
            o += row[k] == 1
        counts[r + 1] = c
        ones[r] = o
    indptr = np.cumsum(counts)
    indices = np.empty(indptr[M], dtype=np.int32)
    values = np.empty(indptr[M], dtype=x.dtype)
    blocks = (M + ROWS_CSR - 1) // ROWS_CSR
    for blk in prange(blocks):
        found = np.empty(K, dtype=np.int32)  # one row's non-zero columns, reused by the block's rows
        for r in range(blk * ROWS_CSR, min(M, (blk + 1) * ROWS_CSR)):
            row = x[r]
            n = 0
            for k in range(K):  # branch-free (2x faster at 5% density): write every column, keep the non-zeros
                found[n] = k
                n += row[k] != 0
            p = indptr[r]
            for q in range(n):
                indices[p + q] = found[q]
                values[p + q] = row[found[q]]
    return indptr, indices, values, ones.sum() == indptr[M]


@njit(**_FLAGS)
def csr_matmul(indptr, indices, values, binary, wt, bias, use_bias, out):
    """``out[M, N] = bias + X @ wt`` for CSR ``X[M, K]`` and dense ``wt[K, N]``.

    Four non-zeros are folded into each pass over the output tile, so the tile is loaded and
    stored a quarter as often; binary (spike) inputs skip the multiplications.
    """
    M, N = out.shape
    blocks = (M + ROWS - 1) // ROWS
    for blk in prange(blocks):
        r_end = min(M, (blk + 1) * ROWS)
        for j0 in range(0, N, TILE):
            j1 = min(N, j0 + TILE)
            b = bias[j0:j1]
            for r in range(blk * ROWS, r_end):
                # Loops over whole slices (not range(j0, j1)) are what LLVM vectorises.
                o = out[r, j0:j1]
                for j in range(o.shape[0]):
                    o[j] = b[j] if use_bias else 0
                p, end = indptr[r], indptr[r + 1]
                while p + 4 <= end:
                    w0 = wt[indices[p], j0:j1]
                    w1 = wt[indices[p + 1], j0:j1]
                    w2 = wt[indices[p + 2], j0:j1]
                    w3 = wt[indices[p + 3], j0:j1]
                    if binary:
                        for j in range(o.shape[0]):
                            o[j] += (w0[j] + w1[j]) + (w2[j] + w3[j])
                    else:
                        v0, v1, v2, v3 = values[p], values[p + 1], values[p + 2], values[p + 3]
                        for j in range(o.shape[0]):
                            o[j] += (v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j])
                    p += 4
                while p < end:
                    v = values[p]
                    w0 = wt[indices[p], j0:j1]
                    for j in range(o.shape[0]):
                        o[j] += v * w0[j]
                    p += 1


@njit(**_FLAGS)
def rows_matmul(x, wt, bias, use_bias, out):
    """``out[M, N] = bias + x @ wt`` for a sparse ``x[M, K]`` stored dense, without building CSR
    arrays (inference: nothing is kept for a backward pass). Each row's non-zero columns are found
    branch-free into a scratch row, then summed with the grouping and order of :func:`csr_matmul`
    (a row whose non-zeros are all 1 takes the binary sums, which equal ``1 * w`` products
    exactly), so both give the same bits.
    """
    M, K = x.shape
    N = out.shape[1]
    blocks = (M + ROWS - 1) // ROWS
    for blk in prange(blocks):
        found = np.empty(K, dtype=np.int32)
        for r in range(blk * ROWS, min(M, (blk + 1) * ROWS)):
            row = x[r]
            n = 0
            ones = 0
            for k in range(K):
                found[n] = k
                n += row[k] != 0
                ones += row[k] == 1
            binary = ones == n
            for j0 in range(0, N, TILE):
                j1 = min(N, j0 + TILE)
                b = bias[j0:j1]
                o = out[r, j0:j1]
                for j in range(o.shape[0]):
                    o[j] = b[j] if use_bias else 0
                p = 0
                while p + 4 <= n:
                    w0 = wt[found[p], j0:j1]
                    w1 = wt[found[p + 1], j0:j1]
                    w2 = wt[found[p + 2], j0:j1]
                    w3 = wt[found[p + 3], j0:j1]
                    if binary:
                        for j in range(o.shape[0]):
                            o[j] += (w0[j] + w1[j]) + (w2[j] + w3[j])
                    else:
                        v0, v1, v2, v3 = row[found[p]], row[found[p + 1]], row[found[p + 2]], row[found[p + 3]]
                        for j in range(o.shape[0]):
                            o[j] += (v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j])
                    p += 4
                while p < n:
                    v = row[found[p]]
                    w0 = wt[found[p], j0:j1]
                    for j in range(o.shape[0]):
                        o[j] += v * w0[j]
                    p += 1


@njit(**_FLAGS)
def csr_t_matmul(indptr, indices, values, binary, g, out, width):
    """``out[K, N] = X.T @ g`` for CSR ``X[M, K]`` and dense ``g[M, N]`` (``out`` zeroed here).

    Threads own column tiles of ``width`` columns, so their writes never collide.
    """
    M, N = g.shape
    tiles = (N + width - 1) // width
    for tile in prange(tiles):
        j0 = tile * width
        j1 = min(N, j0 + width)
        for k in range(out.shape[0]):
            o = out[k, j0:j1]
            for j in range(o.shape[0]):
                o[j] = 0
        for r in range(M):
            gr = g[r, j0:j1]
            for p in range(indptr[r], indptr[r + 1]):
                o = out[indices[p], j0:j1]
                if binary:
                    for j in range(o.shape[0]):
                        o[j] += gr[j]
                else:
                    v = values[p]
                    for j in range(o.shape[0]):
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


announce_first_compile(globals())
