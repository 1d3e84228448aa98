import pytest
import torch
import torch.nn.functional as F

from spikeflow.torch import sparse_linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("density", [0.03, 0.2])
@pytest.mark.parametrize("bias", [True, False])
def test_sparse_input_linear_equals_dense(dtype, binary, density, bias):
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(300, 37, generator=gen) < density
    x = mask.to(dtype) if binary else mask.to(dtype) * torch.randn(300, 37, generator=gen, dtype=dtype)
    x.requires_grad_()
    w = torch.randn(1100, 37, generator=gen, dtype=dtype, requires_grad=True)  # wider than one tile
    b = torch.randn(1100, generator=gen, dtype=dtype, requires_grad=True) if bias else None
    y = sparse_linear._SparseInputLinear.apply(x, w, b)
    ref = F.linear(x, w, b)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, ref, **tol)
    g = torch.randn(ref.shape, generator=gen, dtype=dtype)
    inputs = (x, w) + ((b,) if bias else ())
    for got, want in zip(torch.autograd.grad(y, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, **tol)


def test_dispatch_by_density_and_device():
    x = (torch.rand(64, 50) < 0.05).float()
    w = torch.randn(8, 50, requires_grad=True)
    assert sparse_linear.linear(x, w).grad_fn.name().startswith("_SparseInputLinear")
    dense = torch.rand(64, 50)
    assert not sparse_linear.linear(dense, w).grad_fn.name().startswith("_SparseInputLinear")
    assert not sparse_linear.linear(x, w, limit=0).grad_fn.name().startswith("_SparseInputLinear")
    assert 0.0 < sparse_linear.density(x) < 0.2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_to_csr_equals_numpy_nonzero(dtype):
    """The branch-free CSR compression against NumPy's nonzero: empty and full rows, the first and
    last columns, values other than 1, a row count that is not a multiple of the row block."""
    from spikeflow.torch import sparse_kernels

    gen = torch.Generator().manual_seed(1)
    x = ((torch.rand(203, 41, generator=gen) < 0.1) * torch.randn(203, 41, generator=gen)).to(dtype)
    x[5] = 0
    x[6] = 2.5
    x[:, 0] = 1
    x[7:9, -1] = -3
    arr = x.numpy()
    indptr, indices, values, binary = sparse_kernels.dense_to_csr(arr)
    rows, cols = arr.nonzero()
    assert indptr.tolist() == [0] + torch.tensor(arr != 0).sum(1).cumsum(0).tolist()
    assert indices.tolist() == cols.tolist()
    assert values.tolist() == arr[rows, cols].tolist()
    assert not binary
    spikes = (arr != 0).astype(arr.dtype)
    assert sparse_kernels.dense_to_csr(spikes)[3]
    empty = sparse_kernels.dense_to_csr(arr[:0])
    assert empty[0].tolist() == [0] and len(empty[1]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("binary", [True, False, "mixed"])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_product_equals_sparse_product_bit_for_bit(dtype, binary, bias):
    """The CSR-free inference product repeats the autograd sparse product exactly (lean BPTT
    recomputes chunks with one and runs them first with the other), and equals F.linear."""
    gen = torch.Generator().manual_seed(2)
    mask = torch.rand(203, 45, generator=gen) < 0.1
    x = mask.to(dtype) if binary is True else mask.to(dtype) * torch.randn(203, 45, generator=gen, dtype=dtype)
    if binary == "mixed":  # some rows of ones only, in a matrix that is not binary as a whole
        x[::3] = mask[::3].to(dtype)
    x[4] = 0
    w = torch.randn(1100, 45, generator=gen, dtype=dtype)  # wider than one tile
    b = torch.randn(1100, generator=gen, dtype=dtype) if bias else None
    got = sparse_linear.inference_linear(x, w.t().contiguous(), b)
    want = sparse_linear._SparseInputLinear.apply(x, w, b)
    assert torch.equal(got, want)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, F.linear(x, w, b), **tol)
