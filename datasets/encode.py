"""Encode dense signals as spike tensors, time-major ``[T, B, ...]``.

NumPy in, NumPy out; torch in, torch out (same device). Random encoders take a ``seed``.
"""

from __future__ import annotations

import numpy as np

from spikeflow.errors import DataError


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _uniform(shape, like, seed):
    if _is_torch(like):
        import torch

        gen = torch.Generator(device=like.device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
        return torch.rand(shape, generator=gen, device=like.device, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    return np.random.default_rng(seed).random(shape)


def _check(x, name: str, lo: float | None = 0.0, hi: float | None = None):
    if not _is_torch(x):
        x = np.asarray(x, dtype=np.float64)
    finite = bool(x.isfinite().all()) if _is_torch(x) else bool(np.isfinite(x).all())
    if not finite:
        raise DataError(f"{name}: input holds NaN or infinite values")
    size = x.numel() if _is_torch(x) else x.size
    if x.ndim == 0 or size == 0:
        raise DataError(f"{name}: input must be a non-empty array with a batch dimension [B, ...], got shape {tuple(x.shape)}")
    if lo is not None and float(x.min()) < lo or hi is not None and float(x.max()) > hi:
        raise DataError(f"{name}: values must lie in [{lo}, {hi}], found [{float(x.min())}, {float(x.max())}]")
    return x


def rate_encode(x, n_steps: int, gain: float = 1.0, method: str = "bernoulli", seed: int | None = None):
    """Rate code: each step spikes at random with a probability (or count mean) of ``gain * x``.

    Args:
        x: ``[B, ...]`` values >= 0 (<= 1/gain for Bernoulli).
        n_steps: ``T``.
        gain: scales ``x`` to a per-step probability or rate.
        method: ``"bernoulli"`` (0/1 spikes, P = gain*x) or ``"poisson"`` (integer counts with mean gain*x).
        seed: seed of the random generator.

    Returns:
        ``[T, B, ...]`` float spikes (or counts).

    Example:
        >>> s = rate_encode(np.full((2, 3), 0.25), n_steps=4000, seed=0)
        >>> s.shape, abs(float(s.mean()) - 0.25) < 0.01
        ((4000, 2, 3), True)
    """
    if n_steps < 1:
        raise DataError(f"rate_encode: n_steps must be >= 1, got {n_steps}")
    if method == "bernoulli":
        x = _check(x, "rate_encode", 0.0, 1.0 / gain)
        u = _uniform((n_steps, *x.shape), x, seed)
        out = u < (x * gain)[None]
        return out.to(x.dtype) if _is_torch(x) else out.astype(np.float64)
    if method == "poisson":
        x = _check(x, "rate_encode", 0.0, None)
        if _is_torch(x):
            import torch

            gen = torch.Generator(device=x.device)
            gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
            return torch.poisson((x * gain).expand(n_steps, *x.shape).contiguous(), generator=gen)
        return np.random.default_rng(seed).poisson(x * gain, size=(n_steps, *x.shape)).astype(np.float64)
    raise DataError(f"rate_encode: method must be 'bernoulli' or 'poisson', got {method!r}")


def latency_encode(x, n_steps: int, method: str = "linear", threshold: float = 0.01):
    """Time-to-first-spike code: one spike per value, larger values earlier; values below ``threshold`` never spike.

    ``linear``: ``t = round((1 - x) * (T - 1))``; ``log``: ``t = round((T - 1) * ln(x) / ln(threshold))``.

    Args:
        x: ``[B, ...]`` values in [0, 1].
        n_steps: ``T``.

    Returns:
        ``[T, B, ...]`` float spikes, at most one per element.

    Example:
        >>> s = latency_encode(np.array([[1.0, 0.5, 0.0]]), n_steps=5)
        >>> s.argmax(axis=0).tolist(), s.sum(axis=0).tolist()
        ([[0, 2, 0]], [[1.0, 1.0, 0.0]])
    """
    if n_steps < 1:
        raise DataError(f"latency_encode: n_steps must be >= 1, got {n_steps}")
    if not 0 < threshold < 1:
        raise DataError(f"latency_encode: threshold must lie in (0, 1), got {threshold}")
    x = _check(x, "latency_encode", 0.0, 1.0)
    xn = x.detach().cpu().double().numpy() if _is_torch(x) else x
    fires = xn >= threshold
    with np.errstate(divide="ignore"):
        if method == "linear":
            when = np.round((1.0 - xn) * (n_steps - 1))
        elif method == "log":
            when = np.round((n_steps - 1) * np.log(np.maximum(xn, threshold)) / np.log(threshold))
        else:
            raise DataError(f"latency_encode: method must be 'linear' or 'log', got {method!r}")
    when = np.clip(when, 0, n_steps - 1).astype(np.int64)
    out = (np.arange(n_steps).reshape(-1, *([1] * xn.ndim)) == when[None]) & fires[None]
    out = out.astype(np.float64)
    if _is_torch(x):
        import torch

        return torch.as_tensor(out, dtype=x.dtype, device=x.device)
    return out


def delta_encode(x, threshold: float = 0.1, channels: bool = False):
    """Delta (send-on-change) code of a time-major signal ``[T, B, ...]``.

    A spike fires at step ``t`` when ``x[t]`` differs from the value at the element's last spike
    (initially ``x[0]``) by at least ``threshold``; the reference then moves to ``x[t]``.

    Args:
        x: ``[T, B, ...]`` signal.
        threshold: change needed for a spike (> 0).
        channels: return ``[T, B, 2, ...]`` with ON (rises) in channel 0 and OFF (falls) in
            channel 1 instead of one signed tensor with +1/-1.

    Example:
        >>> delta_encode(np.array([[0.0], [0.05], [0.2], [0.0]]), threshold=0.1)[:, 0].tolist()
        [0.0, 0.0, 1.0, -1.0]
    """
    if not threshold > 0:
        raise DataError(f"delta_encode: threshold must be > 0, got {threshold}")
    torch_in = _is_torch(x)
    xn = x.detach().cpu().double().numpy() if torch_in else np.asarray(x, dtype=np.float64)
    _check(xn, "delta_encode", None, None)
    if xn.ndim < 2:
        raise DataError(f"delta_encode: input must be time-major [T, B, ...], got shape {xn.shape}")
    ref = xn[0].copy()
    out = np.zeros_like(xn)
    # Sequential in time by nature (the reference depends on past spikes); vectorised over elements.
    for t in range(1, xn.shape[0]):
        d = xn[t] - ref
        spike = np.abs(d) >= threshold
        out[t] = np.sign(d) * spike
        ref = np.where(spike, xn[t], ref)
    if channels:
        out = np.stack([out > 0, out < 0], axis=2).astype(np.float64)
    if torch_in:
        import torch

        return torch.as_tensor(out, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    return out
