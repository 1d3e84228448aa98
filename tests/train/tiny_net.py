"""A tiny time-major spiking network for trainer tests that must not depend on the lowering."""

import torch


class _Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate backward."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (1 + 10 * v.abs()) ** 2


class TinySNN(torch.nn.Module):
    """Linear -> LIF (decay 0.8, threshold 1, reset to zero) -> Linear -> leaky integrator."""

    def __init__(self, n_in=8, n_hidden=16, n_out=3, dropout=0.0):
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, n_hidden)
        self.fc2 = torch.nn.Linear(n_hidden, n_out)
        self.dropout = torch.nn.Dropout(dropout)

    def run(self, x, record=()):
        v = torch.zeros(x.shape[1], self.fc1.out_features, dtype=x.dtype)
        u = torch.zeros(x.shape[1], self.fc2.out_features, dtype=x.dtype)
        spikes, outs = [], []
        current = self.fc1(x)
        for t in range(x.shape[0]):
            v = 0.8 * v + current[t]
            z = _Spike.apply(v - 1.0)
            v = v * (1 - z)
            spikes.append(z)
            u = 0.9 * u + self.fc2(self.dropout(z))
            outs.append(u)
        rec = {"lif": torch.stack(spikes)}
        return torch.stack(outs), {k: rec[k] for k in record}

    def forward(self, x):
        return self.run(x)[0]


def toy_data(n=96, steps=10, n_in=8, classes=3, seed=0):
    """Batch-first spike data [N, T, n_in] whose class sets which inputs fire most."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    rates = torch.full((n, n_in), 0.1)
    for c in range(classes):
        rates[y == c, c * (n_in // classes) : (c + 1) * (n_in // classes)] = 0.7
    x = (torch.rand(n, steps, n_in, generator=g) < rates[:, None]).float()
    return x, y
