"""Dense layers on sparse inputs: ``y = x @ W.T + b`` at a cost proportional to the spike count.

Spiking layers see mostly zeros. When a CPU input is sparse enough, :func:`linear` compresses it to
CSR rows once and computes the forward product and the weight gradient with the kernels in
:mod:`spikeflow.torch.sparse_kernels`; the input gradient (needed only when the input itself is
trained upstream) stays a dense GEMM. Denser inputs, other devices and other dtypes use
``torch.nn.functional.linear``. Results agree with the dense path up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DENSITY_LIMIT = 0.1
"""Inputs with at most this fraction of non-zeros take the sparse forward product. Measured on a
2-thread CPU (float32 and float64, 700x256 and 1000x1000 weights, 640 and 6400 rows): the dense
GEMM wins from about 10-15% density on (at 20%, 1000x1000, 6400 rows: 119 ms dense, 194 ms CSR
conversion + sparse product), so 20%-dense inputs now take one GEMM, forward and weight gradient."""
WEIGHT_GRAD_LIMIT = 0.1
"""Up to this density the weight gradient is sparse too; above it a dense GEMM is faster."""


def _kernels():
    from spikeflow.torch import sparse_kernels

    return sparse_kernels


class _SparseInputLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        k = _kernels()
        x = x.contiguous()
        indptr, indices, values, binary = k.dense_to_csr(x.detach().numpy())
        wt = weight.detach().t().contiguous()
        out = torch.empty((x.shape[0], weight.shape[0]), dtype=x.dtype)
        b = bias.detach() if bias is not None else wt.new_zeros(0)
        k.csr_matmul(indptr, indices, values, binary, wt.numpy(), b.numpy(), bias is not None, out.numpy())
        ctx.csr = (indptr, indices, values, binary)
        ctx.has_bias = bias is not None
        ctx.sparse_grad = len(indices) <= WEIGHT_GRAD_LIMIT * x.numel()
        ctx.save_for_backward(weight, x)
        return out

    @staticmethod
    def backward(ctx, g):
        k = _kernels()
        weight, x = ctx.saved_tensors
        g = g.contiguous()
        g_x = g_w = g_b = None
        if ctx.needs_input_grad[0]:
            g_x = g @ weight
        if ctx.needs_input_grad[1] and ctx.sparse_grad:
            g_wt = torch.empty((x.shape[1], g.shape[1]), dtype=g.dtype)
            threads = torch.get_num_threads()
            width = max(128, -(-g.shape[1] // (2 * threads)))  # at least two tiles per thread
            k.csr_t_matmul(*ctx.csr, g.numpy(), g_wt.numpy(), width)
            g_w = g_wt.t()
        elif ctx.needs_input_grad[1]:
            g_w = g.t() @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            g_b = g.sum(0)
        return g_x, g_w, g_b


def density(x: torch.Tensor) -> float:
    """Estimated fraction of non-zeros of a 2-d CPU tensor (every 8th row is counted)."""
    return float(_kernels().sampled_density(x.detach().contiguous().numpy(), 8))


def inference_linear(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ wt + bias`` for a sparse CPU ``x[M, K]`` and a contiguous transposed weight ``wt[K, N]``,
    without autograd: one pass over ``x`` (no CSR arrays). The same bits as the sparse product of
    :func:`linear`, so a chunk recomputed with autograd repeats an inference pass exactly."""
    x = x.detach().contiguous()
    out = torch.empty((x.shape[0], wt.shape[1]), dtype=x.dtype)
    b = bias.detach() if bias is not None else wt.new_zeros(0)
    _kernels().rows_matmul(x.numpy(), wt.detach().numpy(), b.numpy(), bias is not None, out.numpy())
    return out


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, limit: float = DENSITY_LIMIT) -> torch.Tensor:
    """``x @ weight.T + bias`` for ``x[M, K]``, through the sparse kernels when ``x`` is sparse."""
    usable = (
        x.device.type == "cpu" and x.dim() == 2 and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype and limit > 0 and x.shape[0] * x.shape[1] > 0
    )
    if usable and density(x) <= limit:
        return _SparseInputLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)
