"""Dynamic-confidence early exit: calibration on a validation split, curves and pictures.

:func:`calibrate` runs the network over the whole validation set once, decodes the confidence of
the accumulated output after every step (:mod:`spikeflow.exit.policy`), and sweeps the
threshold: each threshold gives a validation accuracy and a mean number of steps. It returns the
Pareto front of those points, the chosen threshold (the fewest mean steps whose accuracy is within
``max_accuracy_drop`` of running every sample to ``T_max``), the fixed-``T`` curve, and the
oracle curve (each sample stopped at its earliest step whose prediction stays correct up to the
budget), which shows what the network could reach.

Decisions are causal: stopping a sample never changes the steps before it, so the exit of every
threshold follows exactly from the full-length output trajectories.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, 200)
    >>> outputs = rng.normal(0, 1, (16, 200, 3)); outputs[:, np.arange(200), labels] += 1.0
    >>> res = calibrate_outputs(outputs, labels, max_accuracy_drop=0.01)
    >>> bool(res.mean_steps < 16), bool(res.accuracy >= res.reference_accuracy - 0.01)
    (True, True)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.errors import DataError, GraphError
from spikeflow.exit.policy import ExitPolicy

MERGE_TOL = 1e-9
"""Confidences closer than this are one level: thresholds sit halfway between distinct levels, so
a last-bit difference between backends can never move a sample across the chosen threshold."""


# ------------------------------------------------------------------------------ decoding


def decode(outputs, policy: ExitPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Confidence ``[T, N]`` and prediction ``[T, N]`` after every step of ``outputs[T, N, C]``."""
    from spikeflow.exit.runners import trajectories

    y = _as_array(outputs, "outputs")
    if y.ndim != 3 or y.shape[2] < 2:
        raise DataError(f"outputs: expected [T, N, classes >= 2], got shape {y.shape}")
    conf = np.zeros(y.shape[:2])
    pred = np.zeros(y.shape[:2], dtype=np.int64)
    trajectories(np.ascontiguousarray(y), float(policy.decay), float(policy.temperature), conf, pred)
    return conf, pred


def exit_steps_for(conf: np.ndarray, thresholds, policy: ExitPolicy) -> np.ndarray:
    """Exit step (1-based) of every sample for every threshold: ``[K, N]`` int64."""
    last = policy.steps_for(conf.shape[0])
    first = min(policy.min_steps, last) - 1
    window = conf[first:last]
    # The first step with conf >= theta is the first at which the running maximum reaches theta.
    runmax = np.maximum.accumulate(window, axis=0)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    steps = np.empty((len(thresholds), conf.shape[1]), dtype=np.int64)
    for n in range(conf.shape[1]):
        steps[:, n] = np.searchsorted(runmax[:, n], thresholds, side="left")
    return np.minimum(steps + first + 1, last)


def evaluate_outputs(outputs, labels, policy: ExitPolicy) -> dict[str, Any]:
    """Accuracy, mean steps and per-sample exits of ``policy`` on full-length ``outputs[T, N, C]``."""
    labels = _labels(labels, np.shape(outputs)[1] if np.ndim(outputs) == 3 else None)
    conf, pred = decode(outputs, policy)
    steps = exit_steps_for(conf, [policy.threshold], policy)[0]
    chosen = pred[steps - 1, np.arange(len(steps))]
    return {"accuracy": float(np.mean(chosen == labels)), "mean_steps": float(steps.mean()), "exit_steps": steps,
            "predictions": chosen, "max_steps": policy.steps_for(conf.shape[0])}


# ------------------------------------------------------------------------------ calibration


@dataclass
class CalibrationResult:
    """What :func:`calibrate` found on the validation split.

    Attributes:
        policy: the chosen policy (``threshold`` set, ``calibration`` filled in).
        threshold, accuracy, mean_steps, exit_steps: the chosen point on the validation split.
        reference_accuracy: validation accuracy when every sample runs ``t_max`` steps.
        t_max: the step budget (``policy.max_steps`` or the input length).
        sweep: ``{"threshold", "temperature", "min_steps", "accuracy", "mean_steps"}`` arrays of
            every (threshold, temperature) pair tried, plus the "never stop early" point
            (``min_steps = t_max``), which always meets the bound.
        pareto: the same keys, restricted to the non-dominated points (by increasing latency).
        fixed: ``{"steps", "accuracy"}``: every sample stopped after ``steps`` steps.
        oracle: ``{"budget", "mean_steps", "accuracy"}``: per budget ``k``, each sample stops at
            its earliest step whose prediction stays correct through ``k`` (else at ``min_steps``).
    """

    policy: ExitPolicy
    threshold: float
    accuracy: float
    mean_steps: float
    exit_steps: np.ndarray
    reference_accuracy: float
    t_max: int
    sweep: dict[str, np.ndarray]
    pareto: dict[str, np.ndarray]
    fixed: dict[str, np.ndarray]
    oracle: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, graph) -> ExitPolicy:
        """Attach the chosen policy to ``graph``."""
        from spikeflow.exit.policy import set_exit_policy

        return set_exit_policy(graph, self.policy)

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{name: (mean_steps, accuracy)}`` for :func:`plot_latency_accuracy`."""
        return {
            "policy (Pareto front)": (self.pareto["mean_steps"], self.pareto["accuracy"]),
            "fixed T": (self.fixed["steps"].astype(np.float64), self.fixed["accuracy"]),
            "oracle": (self.oracle["mean_steps"], self.oracle["accuracy"]),
        }


def candidate_thresholds(conf: np.ndarray, policy: ExitPolicy, limit: int = 2000) -> np.ndarray:
    """Thresholds halfway between the distinct confidence levels seen (at most ``limit``)."""
    last = policy.steps_for(conf.shape[0])
    values = np.unique(conf[min(policy.min_steps, last) - 1 : last])
    keep = [values[0]]
    for v in values[1:]:
        if v - keep[-1] > MERGE_TOL:
            keep.append(v)
    levels = np.array(keep)
    mids = (levels[:-1] + levels[1:]) / 2
    if len(mids) > limit:
        mids = mids[np.unique(np.linspace(0, len(mids) - 1, limit).round().astype(np.int64))]
    low = levels[0] / 2  # everyone stops at min_steps
    high = [min(1.0, (levels[-1] + 1.0) / 2)] if levels[-1] < 1.0 - 2 * MERGE_TOL else []  # nobody stops early
    return np.concatenate([[low], mids, high])


def tradeoff_curves(outputs, labels, policy: ExitPolicy, thresholds=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (mean_steps, accuracy)}`` on any labelled outputs (e.g. the test split): the
    policy's Pareto front over ``thresholds`` at the policy's temperature (default: every
    confidence level of these outputs), fixed ``T`` and the oracle."""
    labels = _labels(labels, np.shape(outputs)[1] if np.ndim(outputs) == 3 else None)
    conf, pred = decode(outputs, policy)
    last = policy.steps_for(conf.shape[0])
    thresholds = candidate_thresholds(conf, policy) if thresholds is None else thresholds
    steps = exit_steps_for(conf, thresholds, policy)
    cols = np.arange(len(labels))
    accuracy = np.array([(pred[s - 1, cols] == labels).mean() for s in steps])
    mean_steps = steps.mean(axis=1)
    front = pareto_front(mean_steps, accuracy)
    fixed, oracle = fixed_curve(pred, labels, last), oracle_curve(pred, labels, last, policy.min_steps)
    return {
        "policy (Pareto front)": (mean_steps[front], accuracy[front]),
        "fixed T": (fixed["steps"].astype(np.float64), fixed["accuracy"]),
        "oracle": (oracle["mean_steps"], oracle["accuracy"]),
    }


def fixed_curve(pred: np.ndarray, labels: np.ndarray, last: int) -> dict[str, np.ndarray]:
    """Accuracy when every sample stops after ``t`` steps, ``t = 1..last``."""
    return {"steps": np.arange(1, last + 1), "accuracy": (pred[:last] == labels[None]).mean(axis=1)}


def oracle_curve(pred: np.ndarray, labels: np.ndarray, last: int, min_steps: int = 1) -> dict[str, np.ndarray]:
    """Per budget ``k``: each sample stops at its earliest step whose prediction stays correct
    through ``k``; a sample wrong at ``k`` stops at ``min_steps`` (it is wrong anyway)."""
    correct = pred[:last] == labels[None]
    budgets, means, accs = [], [], []
    for k in range(min_steps, last + 1):
        ok = correct[:k]
        # trailing run of correct steps ending at k: the earliest step from which it stays correct
        stays = np.flip(np.logical_and.accumulate(np.flip(ok, 0), axis=0), 0)
        earliest = np.argmax(stays, axis=0) + 1
        good = stays[k - 1]
        steps = np.where(good, np.maximum(earliest, min_steps), min_steps)
        budgets.append(k)
        means.append(steps.mean())
        accs.append(good.mean())
    return {"budget": np.array(budgets), "mean_steps": np.array(means), "accuracy": np.array(accs)}


def pareto_front(mean_steps: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (fewer steps, higher accuracy), by increasing steps."""
    order = np.lexsort((-accuracy, mean_steps))
    keep, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            keep.append(i)
            best = accuracy[i]
    return np.array(keep, dtype=np.int64)


def temperature_grid(outputs: np.ndarray, policy: ExitPolicy) -> np.ndarray:
    """Temperatures worth trying: the policy's, and a geometric grid around the typical margin
    between the two largest accumulated outputs at ``T_max``."""
    acc = np.zeros(outputs.shape[1:])
    for t in range(policy.steps_for(outputs.shape[0])):
        acc = policy.decay * acc + outputs[t]
    top = np.sort(acc, axis=1)
    margin = float(np.median(top[:, -1] - top[:, -2]))
    scale = margin if margin > 0 else 1.0
    return np.unique(np.concatenate([[policy.temperature], scale * 2.0 ** np.arange(-3, 5)]))


def calibrate_outputs(outputs, labels, max_accuracy_drop: float = 0.005, *, policy: ExitPolicy | None = None,
                      output: str = "output", temperatures="auto") -> CalibrationResult:
    """Calibrate from full-length validation outputs ``[T, N, C]`` and labels ``[N]``.

    Args:
        outputs: the decoded Output node's values over time for every validation sample.
        labels: integer classes.
        max_accuracy_drop: allowed loss of validation accuracy against running ``T_max`` steps,
            as a fraction (0.005 = half a percentage point), in [0, 1).
        policy: template for the other fields (output, min/max steps, decay, temperature).
        output: the Output node name when no ``policy`` is given.
        temperatures: softmax temperatures swept together with the threshold: "auto"
            (:func:`temperature_grid`), a sequence of positive numbers, or None (the template's only).
    """
    if not isinstance(max_accuracy_drop, (int, float)) or isinstance(max_accuracy_drop, bool) or not 0 <= max_accuracy_drop < 1:
        raise DataError(f"argument 'max_accuracy_drop': expected a fraction in [0, 1) (0.005 = 0.5 points), got {max_accuracy_drop!r}")
    y = _as_array(outputs, "outputs")
    if y.ndim != 3:
        raise DataError(f"outputs: expected [T, N, classes], got shape {y.shape}")
    if y.shape[1] == 0:
        raise DataError("validation data: is empty (no samples to calibrate on)")
    if y.shape[0] == 0:
        raise DataError("validation data: has no time steps")
    labels = _labels(labels, y.shape[1])
    template = policy if policy is not None else ExitPolicy(output=output, threshold=1.0)
    if temperatures is None:
        temps = np.array([template.temperature])
    elif isinstance(temperatures, str) and temperatures == "auto":
        temps = temperature_grid(y, template)
    else:
        temps = np.asarray(temperatures, dtype=np.float64).reshape(-1)
        if temps.size == 0 or not np.all(np.isfinite(temps)) or np.any(temps <= 0):
            raise DataError(f"argument 'temperatures': expected positive numbers, 'auto' or None, got {temperatures!r}")
    last = template.steps_for(y.shape[0])
    cols = np.arange(y.shape[1])
    rows = {"threshold": [], "temperature": [], "min_steps": [], "accuracy": [], "mean_steps": []}
    all_steps = []
    pred = None
    for temp in temps:
        trial = template.with_threshold(1.0, temperature=float(temp))
        conf, pred = decode(y, trial)
        thresholds = candidate_thresholds(conf, trial)
        steps = exit_steps_for(conf, thresholds, trial)
        rows["threshold"].append(thresholds)
        rows["temperature"].append(np.full(len(thresholds), float(temp)))
        rows["min_steps"].append(np.full(len(thresholds), template.min_steps))
        rows["accuracy"].append(np.array([(pred[s - 1, cols] == labels).mean() for s in steps]))
        rows["mean_steps"].append(steps.mean(axis=1))
        all_steps.extend(steps)
    reference = float((pred[last - 1] == labels).mean())  # predictions do not depend on the temperature
    # "never stop early" (min_steps = T_max) is always a candidate, so the bound can always be met
    for key, value in (("threshold", 1.0), ("temperature", template.temperature), ("min_steps", last), ("accuracy", reference),
                       ("mean_steps", float(last))):
        rows[key].append(np.array([value]))
    all_steps.append(np.full(y.shape[1], last, dtype=np.int64))
    sweep = {k: np.concatenate(v) for k, v in rows.items()}
    sweep["min_steps"] = sweep["min_steps"].astype(np.int64)
    accuracy, mean_steps = sweep["accuracy"], sweep["mean_steps"]
    ok = np.flatnonzero(accuracy >= reference - max_accuracy_drop - 1e-12)
    best = ok[np.lexsort((-sweep["temperature"][ok], -accuracy[ok], mean_steps[ok]))[0]]
    front = pareto_front(mean_steps, accuracy)
    info = {"validation_accuracy": float(accuracy[best]), "validation_mean_steps": float(mean_steps[best]),
            "reference_accuracy": reference, "t_max": int(last), "max_accuracy_drop": float(max_accuracy_drop),
            "n_validation": int(y.shape[1])}
    chosen = template.with_threshold(float(sweep["threshold"][best]), temperature=float(sweep["temperature"][best]),
                                     min_steps=int(sweep["min_steps"][best]), calibration=info)
    return CalibrationResult(
        policy=chosen, threshold=chosen.threshold, accuracy=float(accuracy[best]), mean_steps=float(mean_steps[best]),
        exit_steps=all_steps[best], reference_accuracy=reference, t_max=int(last), sweep=sweep,
        pareto={k: v[front] for k, v in sweep.items()}, fixed=fixed_curve(pred, labels, last),
        oracle=oracle_curve(pred, labels, last, template.min_steps),
    )


def calibrate(graph_or_module, validation_data, max_accuracy_drop: float = 0.005, *, policy: ExitPolicy | None = None,
              batch_size: int = 256, progress: bool = True) -> CalibrationResult:
    """Choose the exit threshold on a validation split: see the module docstring.

    Args:
        graph_or_module: a :class:`spikeflow.Graph` (run in float64 by ``sf.to_torch``) or a
            module mapping ``[T, B, ...]`` to ``[T, B, C]`` (or to a dict by Output name).
        validation_data: ``(x, y)``: ``x`` batch-first ``[N, T, ...]`` (as for the Trainer), ``y``
            ``[N]`` integer labels.
        max_accuracy_drop: fraction of accuracy that may be lost against ``T_max`` steps.
        policy: template for output, min/max steps, decay, temperature (default: the graph's policy
            if it has one, else the only Output node with defaults).
        batch_size: samples per forward pass.
        progress: show a progress bar.

    Returns:
        A :class:`CalibrationResult`; ``result.apply(graph)`` stores the chosen policy in the graph.
    """
    policy = _policy_for(graph_or_module, policy)
    outputs, labels = network_outputs(graph_or_module, validation_data, output=policy.output, batch_size=batch_size, progress=progress)
    return calibrate_outputs(outputs, labels, max_accuracy_drop, policy=policy)


def evaluate(graph_or_module, data, policy: ExitPolicy | None = None, *, batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """Accuracy and mean steps of an exit policy on labelled ``(x [N, T, ...], y)`` data."""
    policy = policy if policy is not None else _policy_for(graph_or_module, None, need_threshold=True)
    outputs, labels = network_outputs(graph_or_module, data, output=policy.output, batch_size=batch_size, progress=progress)
    return evaluate_outputs(outputs, labels, policy)


def _graph_of(graph_or_module):
    """The graph of a Graph or of a module made by ``sf.to_torch`` (None for other modules)."""
    from spikeflow.ir import Graph

    if isinstance(graph_or_module, Graph):
        return graph_or_module
    if "spikeflow.torch.lowering" in sys.modules:  # only such a module can be a GraphModule
        from spikeflow.torch.lowering import GraphModule

        if isinstance(graph_or_module, GraphModule):
            return graph_or_module.to_graph()
    return None


def _policy_for(graph_or_module, policy: ExitPolicy | None, need_threshold: bool = False) -> ExitPolicy:
    from spikeflow.exit.policy import get_exit_policy

    graph = _graph_of(graph_or_module)
    if policy is not None:
        if not isinstance(policy, ExitPolicy):
            raise GraphError(f"argument 'policy': expected an ExitPolicy, got {type(policy).__name__}")
        if graph is not None:
            from spikeflow.exit.runners import resolve_policy

            resolve_policy(graph, policy)
        return policy
    found = get_exit_policy(graph) if graph is not None else None
    if found is not None:
        return found
    if need_threshold:
        raise GraphError("evaluate: the network has no exit policy; pass policy=")
    outputs = graph.outputs if graph is not None else ["output"]
    if len(outputs) != 1:
        raise GraphError(f"calibrate: the graph has outputs {outputs}; pass policy=ExitPolicy(output=...)")
    return ExitPolicy(output=outputs[0], threshold=1.0)


def network_outputs(graph_or_module, data, *, output: str = "output", batch_size: int = 256, progress: bool = False):
    """Full-length outputs ``[T, N, C]`` (float64 NumPy) and labels ``[N]`` of labelled data."""
    import torch
    from spikeflow._progress import progress_bar

    from spikeflow.ir import Graph

    x, labels = _data(data)
    if isinstance(graph_or_module, Graph):
        from spikeflow.torch.lowering import to_torch

        net = to_torch(graph_or_module, dtype=torch.float64)
    elif isinstance(graph_or_module, torch.nn.Module):
        net = graph_or_module
    else:
        raise GraphError(f"expected a spikeflow Graph or a torch module, got {type(graph_or_module).__name__}")
    param = next(net.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float64
    device = param.device if param is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    chunks = []
    with torch.no_grad():
        for start in progress_bar(range(0, x.shape[0], batch_size), desc="exit: running validation", enabled=progress, leave=False):
            xb = torch.as_tensor(x[start : start + batch_size]).transpose(0, 1).to(device=device, dtype=dtype)
            y = net(xb)
            if isinstance(y, dict):
                if output not in y:
                    raise GraphError(f"exit_policy field 'output': the network has outputs {sorted(y)}, not {output!r}")
                y = y[output]
            chunks.append(y.detach().cpu().double().numpy())
    net.train(was_training)
    return np.concatenate(chunks, axis=1), labels


# ------------------------------------------------------------------------------ pictures


def plot_latency_accuracy(curves: dict, path, *, chosen: tuple[float, float] | None = None, t_max: int | None = None,
                          title: str = "accuracy vs mean latency") -> Path:
    """Accuracy (%) against mean steps for each ``{name: (mean_steps, accuracy)}`` curve, as PNG
    (:func:`spikeflow.plots.accuracy_latency`, the one accuracy/latency picture)."""
    from spikeflow.plots import accuracy_latency

    return accuracy_latency(curves, path, title=title, chosen=chosen, t_max=t_max)


def plot_exit_histogram(exit_steps, path, *, t_max: int | None = None, title: str = "exit steps") -> Path:
    """Histogram of per-sample exit steps, as PNG."""
    from spikeflow.plots import new_figure, save_png

    steps = np.asarray(exit_steps).reshape(-1)
    if steps.size == 0:
        raise DataError("plot_exit_histogram: no exit steps given")
    top = int(t_max if t_max is not None else steps.max())
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    ax.hist(steps, bins=np.arange(0.5, top + 1.5), color="tab:blue", edgecolor="white")
    ax.axvline(steps.mean(), color="r", ls="--", label=f"mean {steps.mean():.2f}")
    ax.set_xlabel("exit step")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend()
    return save_png(fig, path)


# ------------------------------------------------------------------------------ helpers


def _as_array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected numbers ({err})") from None
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: contains NaN or inf")
    return arr


def _labels(labels, n: int | None) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"labels: expected a 1-d array of integer classes, got dtype {arr.dtype} and shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"labels: expected {n} labels (one per sample), got {arr.shape[0]}")
    return arr.astype(np.int64)


def _data(data) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"data: expected (x [N, T, ...], y [N]), got {type(data).__name__}")
    x, y = data
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim < 2:
        raise DataError(f"data: expected batch-first x of shape [N, T, ...], got {x.shape}")
    if x.shape[0] == 0:
        raise DataError("validation data: is empty (no samples)")
    if x.shape[1] == 0:
        raise DataError("data: x has no time steps")
    return x, _labels(y, x.shape[0])
