"""Readouts of a fixed reservoir: features, a linear probe, a small MLP, and for zero-shot
retrieval on held-out classes a CLIP-style pair of projection heads or similarity-to-seen-classes
profiles.

Only these small digital parts are trained (the paper's point: no backpropagation through time).
Features come from recorded reservoir spikes ``[T, B, N]``: spike counts per neuron and per time
window, and the final value of an exponential trace. The linear probe is solved in closed form by
default (ridge regression on standardised features, float64, its regularisation chosen by
generalised cross-validation), or trained by minibatch Adam in torch like the MLP.

Example:
    >>> import numpy as np
    >>> spikes = (np.random.default_rng(0).random((20, 8, 5)) < 0.3).astype(float)
    >>> features(spikes, windows=2).shape
    (8, 15)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from spikeflow.errors import DataError


def features(spikes: np.ndarray, windows: int = 3, trace_decay: float | None = 0.9) -> np.ndarray:
    """``[B, F]`` float32 features of spikes ``[T, B, N]``: counts in ``windows`` equal time windows
    (``windows * N``), then (unless ``trace_decay`` is None) the final trace ``sum_t d^(T-1-t) z_t``."""
    z = np.asarray(spikes, dtype=np.float32)
    if z.ndim != 3:
        raise DataError(f"features: expected spikes [T, B, N], got shape {z.shape}")
    edges, weights = feature_layout(z.shape[0], windows, trace_decay)
    parts = [z[a:b].sum(0) for a, b in zip(edges[:-1], edges[1:])]
    if weights is not None:
        parts.append(np.einsum("t,tbn->bn", weights, z))
    return np.concatenate(parts, axis=1)


def feature_layout(steps: int, windows: int, trace_decay: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The window edges (``windows + 1`` step indices) and float32 trace weights ``d^(T-1-t)`` (None
    without a trace) of :func:`features` over ``steps`` steps."""
    if not 1 <= windows <= steps:
        raise DataError(f"features: windows must be in [1, {steps}], got {windows}")
    edges = np.linspace(0, steps, windows + 1).astype(int)
    weights = None if trace_decay is None else (trace_decay ** np.arange(steps - 1, -1, -1)).astype(np.float32)
    return edges, weights


@dataclass
class Readout:
    """A trained readout: standardisation, a torch module, its training time (standardisation
    included), loss history (gradient training) and ridge penalty (closed-form probe)."""

    mean: np.ndarray
    std: np.ndarray
    module: object
    train_seconds: float
    history: list = field(default_factory=list)
    alpha: float | None = None

    def logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.as_tensor((x - self.mean) / self.std, dtype=torch.get_default_dtype())).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(1)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))


def _standardise(x: np.ndarray):
    mean = x.mean(0, keepdims=True)
    std = x.std(0, keepdims=True) + 1e-3
    return mean.astype(np.float32), std.astype(np.float32)


def _check(x, y):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    if x.ndim != 2 or y.shape != (len(x),):
        raise DataError(f"readout: expected features [N, F] and labels [N], got {x.shape} and {y.shape}")
    return x, y


#: Ridge penalties tried by generalised cross-validation, relative to the mean eigenvalue of X^T X.
RIDGE_GRID = np.logspace(-5, 1, 25)


def ridge_fit(x: np.ndarray, targets: np.ndarray, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge regression of ``targets`` ``[N, C]`` on ``x`` ``[N, F]`` with an unpenalised intercept,
    in float64: ``(W [F, C], b [C], alpha)``.

    ``alpha=None`` picks the penalty from ``RIDGE_GRID * trace(X^T X) / F`` (centred ``X``) with the
    least generalised cross-validation error ``N RSS / (N - 1 - df)^2`` (Golub, Heath & Wahba
    1979), all from one eigendecomposition of ``X^T X``; a given ``alpha`` is one Cholesky solve.
    """
    import torch

    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    xc, yc = xt - x_mean, yt - y_mean
    gram, xty = xc.T @ xc, xc.T @ yc
    n, f = xt.shape
    if alpha is None:
        e, v = torch.linalg.eigh(gram)
        e = e.clamp(min=0.0)
        proj = v.T @ xty  # X^T Y in the eigenbasis
        b2 = (proj**2).sum(1)
        lams = torch.as_tensor(RIDGE_GRID * float(e.sum()) / f, dtype=torch.float64)
        inv = 1.0 / (e[None, :] + lams[:, None])
        rss = float((yc**2).sum()) - (b2[None, :] * (2 * inv - e[None, :] * inv**2)).sum(1)
        df = (e[None, :] * inv).sum(1)
        gcv = n * rss / (n - 1 - df).clamp(min=1e-9) ** 2
        best = int(torch.argmin(gcv))
        alpha = float(lams[best])
        w = v @ (inv[best][:, None] * proj)
    else:
        if alpha <= 0:
            raise DataError(f"ridge: alpha must be > 0 (or None to choose it), got {alpha}")
        w = torch.cholesky_solve(xty, torch.linalg.cholesky(gram + alpha * torch.eye(f, dtype=torch.float64)))
    b = y_mean - x_mean @ w
    return w.numpy(), b.numpy(), float(alpha)


def train_readout(x, y, *, hidden: int | None = None, n_classes: int | None = None, method: str | None = None,
                  alpha: float | None = None, epochs: int = 60, lr: float = 3e-3, weight_decay: float = 1e-4,
                  batch: int = 128, dropout: float = 0.0, seed: int = 0) -> Readout:
    """Train a linear probe (``hidden=None``) or a one-hidden-layer MLP on features ``x`` ``[N, F]``.

    Args:
        method: "ridge" (the linear probe's default: closed-form ridge regression on one-hot
            targets, :func:`ridge_fit`, penalty ``alpha`` or chosen by generalised cross-validation)
            or "gradient" (minibatch Adam on the cross-entropy, ``epochs``, ``lr``, ``weight_decay``,
            ``batch``, ``dropout``; the MLP's only method).
    """
    import torch

    x, y = _check(x, y)
    method = method or ("ridge" if hidden is None else "gradient")
    if method not in ("ridge", "gradient"):
        raise DataError(f"train_readout: method must be 'ridge' or 'gradient', got {method!r}")
    if method == "ridge" and hidden is not None:
        raise DataError("train_readout: method='ridge' fits a linear probe only; use method='gradient' for an MLP (hidden=...)")
    start = time.perf_counter()
    mean, std = _standardise(x)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    torch.manual_seed(seed)
    f = x.shape[1]
    if method == "ridge":
        w, b, alpha = ridge_fit((x - mean) / std, np.eye(n_classes)[y], alpha)
        module = torch.nn.Linear(f, n_classes)
        with torch.no_grad():
            module.weight.copy_(torch.as_tensor(w.T))
            module.bias.copy_(torch.as_tensor(b))
        module.eval()
        return Readout(mean, std, module, time.perf_counter() - start, [], alpha)
    if hidden is None:
        module = torch.nn.Linear(f, n_classes)
    else:
        module = torch.nn.Sequential(torch.nn.Linear(f, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, n_classes))
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    xt = torch.as_tensor((x - mean) / std, dtype=torch.get_default_dtype())
    yt = torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    history = []
    module.train()
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            loss = torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(xt))
    module.eval()
    return Readout(mean, std, module, time.perf_counter() - start, history)


# ------------------------------------------------------------------------------ zero-shot


@dataclass
class ContrastivePair:
    """Two projection heads (modality a, modality b) into one normalised space of ``dim``."""

    readout_a: Readout
    readout_b: Readout
    temperature: float

    def embed_a(self, x: np.ndarray) -> np.ndarray:
        return _normalise(self.readout_a.logits(x))

    def embed_b(self, x: np.ndarray) -> np.ndarray:
        return _normalise(self.readout_b.logits(x))


def _normalise(z: np.ndarray) -> np.ndarray:
    return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


def train_contrastive(xa, ya, xb, yb, *, dim: int = 64, hidden: int | None = None, epochs: int = 200, lr: float = 2e-3,
                      weight_decay: float = 1e-4, temperature: float = 0.1, pairs: int = 256, seed: int = 0) -> ContrastivePair:
    """CLIP-style training of two projection heads (linear, as in the paper, or with a ``hidden``
    ReLU layer) on class-matched pairs.

    Each step draws ``pairs`` (a, b) samples of the same class; the symmetric cross-entropy of the
    ``pairs x pairs`` cosine-similarity matrix (divided by ``temperature``) has every same-class
    entry as a positive (soft targets), since a batch repeats classes.
    """
    import torch

    xa, ya = _check(xa, ya)
    xb, yb = _check(xb, yb)
    classes = np.intersect1d(np.unique(ya), np.unique(yb))
    if len(classes) < 2:
        raise DataError(f"train_contrastive: need at least 2 classes present in both modalities, got {classes.tolist()}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def head(f):
        if hidden is None:
            return torch.nn.Linear(f, dim)
        return torch.nn.Sequential(torch.nn.Linear(f, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, dim))

    (ma, sa), (mb, sb) = _standardise(xa), _standardise(xb)
    ha, hb = head(xa.shape[1]), head(xb.shape[1])
    ta = torch.as_tensor((xa - ma) / sa, dtype=torch.get_default_dtype())
    tb = torch.as_tensor((xb - mb) / sb, dtype=torch.get_default_dtype())
    by_class_a = {c: np.flatnonzero(ya == c) for c in classes}
    by_class_b = {c: np.flatnonzero(yb == c) for c in classes}
    opt = torch.optim.Adam([*ha.parameters(), *hb.parameters()], lr=lr, weight_decay=weight_decay)
    history = []
    start = time.perf_counter()
    for _ in range(epochs):
        cls = rng.choice(classes, pairs)
        ia = np.array([rng.choice(by_class_a[c]) for c in cls])
        ib = np.array([rng.choice(by_class_b[c]) for c in cls])
        za = torch.nn.functional.normalize(ha(ta[ia]), dim=1)
        zb = torch.nn.functional.normalize(hb(tb[ib]), dim=1)
        logits = za @ zb.T / temperature
        same = torch.as_tensor(cls[:, None] == cls[None, :], dtype=logits.dtype)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * torch.log_softmax(logits, 1), 1).mean() + torch.sum(-target * torch.log_softmax(logits.T, 1), 1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    seconds = time.perf_counter() - start
    ha.eval(), hb.eval()
    return ContrastivePair(Readout(ma, sa, ha, seconds, history), Readout(mb, sb, hb, seconds, history), temperature)


def retrieval_accuracy(pair, x_query, y_query, x_gallery, y_gallery, classes=None) -> float:
    """Query (modality a) -> gallery (modality b) zero-shot retrieval: each query is assigned the
    class whose mean gallery embedding (a class prototype) is most similar; accuracy over
    ``classes`` (default: those in the gallery), so chance is ``1 / len(classes)``. ``pair`` is a
    :class:`ContrastivePair` or a :class:`ProfilePair` (anything with ``embed_a``/``embed_b``)."""
    x_query, y_query = _check(x_query, y_query)
    x_gallery, y_gallery = _check(x_gallery, y_gallery)
    classes = np.unique(y_gallery) if classes is None else np.asarray(classes)
    keep = np.isin(y_query, classes)
    if not keep.any():
        raise DataError(f"retrieval_accuracy: no query belongs to the classes {classes.tolist()}")
    zb = pair.embed_b(x_gallery)
    protos = _normalise(np.stack([zb[y_gallery == c].mean(0) for c in classes]))
    za = pair.embed_a(x_query[keep])
    pred = classes[np.argmax(za @ protos.T, axis=1)]
    return float(np.mean(pred == y_query[keep]))


@dataclass
class ProfilePair:
    """Zero-shot embeddings that need no cross-modal training: a sample of either modality becomes
    its profile of similarities to the shared seen classes, measured inside its own modality.

    ``means_*`` are the seen classes' mean features (rows in the order of ``classes``) and
    ``centre_*`` the mean over all seen samples; both are in the (optionally standardised) feature
    space that ``scale_*`` maps into (``(x - centre) / scale``).
    """

    classes: np.ndarray
    centre_a: np.ndarray
    scale_a: np.ndarray
    means_a: np.ndarray
    centre_b: np.ndarray
    scale_b: np.ndarray
    means_b: np.ndarray

    def embed_a(self, x: np.ndarray) -> np.ndarray:
        return _profile(x, self.centre_a, self.scale_a, self.means_a)

    def embed_b(self, x: np.ndarray) -> np.ndarray:
        return _profile(x, self.centre_b, self.scale_b, self.means_b)


def _profile(x, centre, scale, means) -> np.ndarray:
    """Cosine similarity of each centred sample to each centred class mean, z-scored across classes
    (so that the cosine of two profiles is their correlation)."""
    s = _normalise((np.asarray(x, np.float64) - centre) / scale) @ _normalise(means).T
    s = s - s.mean(1, keepdims=True)
    return s / (s.std(1, keepdims=True) + 1e-12)


def train_profiles(xa, ya, xb, yb, *, standardise: bool = False) -> ProfilePair:
    """Similarity-to-seen-classes profiles of two modalities (a :class:`ProfilePair`, for
    :func:`retrieval_accuracy` like a :class:`ContrastivePair`).

    The "training" is the class means of each modality's seen classes. A query of an unseen class
    is matched to the gallery class whose similarities to the seen classes correlate best with its
    own: it transfers what the two modalities share of their class geometry. Features are centred
    and, by default, not standardised (``standardise=True`` divides each feature by its standard
    deviation, as the projection heads do; see docs/rram.md for the comparison).
    """
    xa, ya = _check(xa, ya)
    xb, yb = _check(xb, yb)
    classes = np.intersect1d(np.unique(ya), np.unique(yb))
    if len(classes) < 2:
        raise DataError(f"train_profiles: need at least 2 classes present in both modalities, got {classes.tolist()}")
    parts = []
    for x, y in ((xa, ya), (xb, yb)):
        x = np.asarray(x, np.float64)[np.isin(y, classes)]
        y = y[np.isin(y, classes)]
        centre = x.mean(0, keepdims=True)
        scale = x.std(0, keepdims=True) + 1e-3 if standardise else np.ones_like(centre)
        z = (x - centre) / scale
        parts += [centre, scale, np.stack([z[y == c].mean(0) for c in classes])]
    return ProfilePair(classes, *parts)
