"""One training step (forward + backward) of spiking MLPs: spikeflow vs snnTorch, Norse and SpikingJelly.

Cases (time-major, T=100, batch 64, float32, 2 threads, median of 5 after one warm-up, all
contestants taking turns in every repeat so that a shared machine's slow moments hit each alike):

* ``Linear(700,256)-LIF-Linear(256,20)-LIF`` on 5% Bernoulli input spikes (target: 3x the faster peer);
* ``Linear(1000,1000)-LIF-Linear(1000,1000)-LIF`` on 20% input spikes (target: 2x);
* the same 1000-1000-1000 snnTorch model imported through NIR, ``sf.to_torch(sf.from_snntorch(model,
  sample))`` with nothing else called (PyTorch's default dtype, float32), against that snnTorch
  model (target: 2x). snnTorch's default ``reset_delay=True`` becomes a ``Scale`` self-loop on each
  neuron of the imported graph (see ``docs/conventions.md``), which ``sf.to_torch`` runs inside the
  fused LIF scan (asserted below), so only the loop's addition per step is extra work;
* a ``Linear(700,256)-Synaptic-Linear(256,20)-Synaptic`` snnTorch model (alpha = 0.9, beta = 0.95,
  the defaults otherwise: subtract reset, ``reset_delay=True``) imported the same way, against
  that snnTorch model, on 5% input spikes (target: 2x). Its late reset becomes a ``Scale`` self-loop
  plus a ``Scale -> Delay`` loop that cancels what the synaptic current would carry on; ``sf.to_torch``
  runs both inside the fused CubaLIF scan (asserted below).

All run the same weights and inputs and the same loss (cross-entropy on output spike counts).
Peer versions are read from the installed packages.
The neuron is the same ODE everywhere: a leaky integrator without synaptic current, beta = 0.95.

* spikeflow: ``sf.to_torch(graph)`` (float32 by default): GEMMs batched over time (sparse inputs go through a
  sparse kernel) and the fused numba LIF scan; ``r = tau/dt`` so the input gain is 1, as in snnTorch.
* snnTorch: ``snn.Leaky(beta=0.95)`` stepped module by module in a loop over time, the documented way.
* Norse: ``LIFBoxCell`` lifted over time with ``norse.torch.Lift``, the Linear layers applied to the
  whole sequence at once (as Norse's ``SequentialState`` does). LIFBox is Norse's LIF without the
  synaptic current term, i.e. the same model as ``snn.Leaky`` and spikeflow's LIF; Norse's ``LIF``
  is a current-based neuron (spikeflow's CubaLIF) and would do more work per step.
* SpikingJelly 2.0 (when installed; it installs beside torch 2.13 with ``pip install --no-deps
  spikingjelly loguru``, which ``make bench`` does): ``neuron.LIFNode(tau=20.0, decay_input=False,
  v_reset=None, step_mode="m")``, its documented multi-step mode (the whole sequence through each
  layer, ``functional.reset_net`` before each step): ``v = v - v/tau + x``, i.e. beta = 0.95, input
  gain 1, subtract reset, the same neuron as the others.

Run: ``.venv/bin/python benchmarks/train_step.py`` (``--case TEXT``: only the cases whose name
contains TEXT; their records replace those of the same cases in the results file; a large case
run alone in a fresh process reads up to ~20% slow for spikeflow, see docs/benchmarks.md: record
full runs). Timings are noisy on a shared machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import interleaved_medians, linear_layers, record, set_threads, version, write_results  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

T, B = 100, 64
DT, TAU, THRESHOLD = 1e-3, 20e-3, 1.0
BETA = 1 - DT / TAU
ALPHA = 0.9  # snnTorch Synaptic's synaptic decay (tau_syn = 10 steps)
# case, layer sizes, input spike density, target ratio, how spikeflow gets the network, peers timed
CASES = [
    ("mlp 700-256-20, 5% input spikes", (700, 256, 20), 0.05, 3.0, "graph", ("snntorch", "norse", "spikingjelly")),
    ("mlp 1000-1000-1000, 20% input spikes", (1000, 1000, 1000), 0.20, 2.0, "graph", ("snntorch", "norse", "spikingjelly")),
    ("mlp 1000-1000-1000 from snnTorch via NIR, 20% input spikes", (1000, 1000, 1000), 0.20, 2.0, "nir", ("snntorch",)),
    ("mlp 700-256-20 Synaptic from snnTorch via NIR, 5% input spikes", (700, 256, 20), 0.05, 2.0, "nir synaptic", ("snntorch synaptic",)),
]


def make_data(sizes, density, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, sizes[0], generator=gen) < density).float()
    labels = torch.randint(0, sizes[-1], (B,), generator=gen)
    layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
    return x, labels, [(lay.weight.detach().clone(), lay.bias.detach().clone()) for lay in layers]


def spikeflow_step(weights):
    import spikeflow as sf
    from spikeflow.ir import nodes as n

    layers = []
    for w, b in weights:
        layers += [n.Affine(weight=w.double().numpy(), bias=b.double().numpy()), n.LIF(tau=TAU, v_threshold=THRESHOLD, r=TAU / DT, reset="subtract")]
    net = sf.to_torch(sf.Graph.sequential(n.Input(shape=(weights[0][0].shape[1],)), *layers, dt=DT))
    return _train_step(net)


def spikeflow_nir_step(weights):
    """The snnTorch model of :func:`snntorch_step`, imported through NIR, then ``sf.to_torch`` with its defaults."""
    import snntorch as snn

    import spikeflow as sf

    modules = []
    for lay in linear_layers(weights):
        modules += [lay, snn.Leaky(beta=BETA, threshold=THRESHOLD, init_hidden=True)]
    graph = sf.from_snntorch(nn.Sequential(*modules), torch.zeros(B, weights[0][0].shape[1]))
    net = sf.to_torch(graph)
    assert net.self_loops and all(net.uses_fused_loop(k) for k in net.self_loops), "the late reset must run in the fused scan"
    return _train_step(net)


def spikeflow_nir_synaptic_step(weights):
    """The snnTorch model of :func:`snntorch_synaptic_step`, imported through NIR, then ``sf.to_torch`` with its defaults."""
    import snntorch as snn

    import spikeflow as sf

    modules = []
    for lay in linear_layers(weights):
        modules += [lay, snn.Synaptic(alpha=ALPHA, beta=BETA, threshold=THRESHOLD, init_hidden=True)]
    graph = sf.from_snntorch(nn.Sequential(*modules), torch.zeros(B, weights[0][0].shape[1]))
    net = sf.to_torch(graph)
    assert net.delayed_loops and all(net.uses_fused_loop(k) for k in net.delayed_loops), "the late reset must run in the fused scan"
    return _train_step(net)


def _train_step(net):
    loss_fn = nn.CrossEntropyLoss()

    def step(x, labels):
        net.zero_grad(set_to_none=True)
        out = net(x)
        loss_fn(out.sum(0), labels).backward()
        return out

    return step


def snntorch_step(weights):
    import snntorch as snn

    return _snntorch_loop(weights, lambda: snn.Leaky(beta=BETA, threshold=THRESHOLD), lambda lif: [lif.init_leaky()])


def snntorch_synaptic_step(weights):
    import snntorch as snn

    return _snntorch_loop(weights, lambda: snn.Synaptic(alpha=ALPHA, beta=BETA, threshold=THRESHOLD), lambda lif: list(lif.init_synaptic()))


def _snntorch_loop(weights, make_neuron, initial_state):
    """snnTorch's documented training loop: its neurons stepped in Python, one state list per layer."""
    fcs = linear_layers(weights)
    lifs = [make_neuron() for _ in fcs]
    params = [p for fc in fcs for p in fc.parameters()]
    loss_fn = nn.CrossEntropyLoss()

    def step(x, labels):
        for p in params:
            p.grad = None
        states = [initial_state(lif) for lif in lifs]
        record_ = []
        for t in range(x.shape[0]):
            h = x[t]
            for i, (fc, lif) in enumerate(zip(fcs, lifs)):
                h, *states[i] = lif(fc(h), *states[i])
            record_.append(h)
        out = torch.stack(record_)
        loss_fn(out.sum(0), labels).backward()
        return out

    return step


def norse_step(weights):
    import norse.torch as norse

    fcs = linear_layers(weights)
    # Same membrane dynamics as snnTorch and spikeflow up to the input gain dt/tau: scale the threshold.
    p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1 / TAU), v_th=torch.as_tensor(THRESHOLD * DT / TAU))
    lifts = [norse.Lift(norse.LIFBoxCell(p, dt=DT)) for _ in fcs]
    params = [q for fc in fcs for q in fc.parameters()]
    loss_fn = nn.CrossEntropyLoss()

    def step(x, labels):
        for q in params:
            q.grad = None
        h = x
        for fc, lift in zip(fcs, lifts):
            h, _ = lift(fc(h))
        loss_fn(h.sum(0), labels).backward()
        return h

    return step


def spikingjelly_step(weights):
    from spikingjelly.activation_based import functional, neuron

    fcs = linear_layers(weights)
    lifs = [neuron.LIFNode(tau=TAU / DT, decay_input=False, v_threshold=THRESHOLD, v_reset=None, step_mode="m") for _ in fcs]
    params = [q for fc in fcs for q in fc.parameters()]
    loss_fn = nn.CrossEntropyLoss()

    def step(x, labels):
        for q in params:
            q.grad = None
        for lif in lifs:
            functional.reset_net(lif)
        h = x
        for fc, lif in zip(fcs, lifs):
            h = lif(fc(h))
        loss_fn(h.sum(0), labels).backward()
        return h

    return step


# key -> (package, label after the installed version, step factory)
PEERS = {
    "snntorch": ("snntorch", "Leaky", snntorch_step),
    "snntorch synaptic": ("snntorch", "Synaptic", snntorch_synaptic_step),
    "norse": ("norse", "LIFBoxCell (Lift)", norse_step),
    "spikingjelly": ("spikingjelly", "LIFNode (multi-step)", spikingjelly_step),
}
OURS = {"graph": spikeflow_step, "nir": spikeflow_nir_step, "nir synaptic": spikeflow_nir_synaptic_step}


def peers(keys) -> dict:
    """The installed peers among ``keys``, by label (package version read from the installed package)."""
    from importlib.util import find_spec

    found = {}
    for key in keys:
        package, label, make = PEERS[key]
        if find_spec(package) is None:
            print(f"{package} is not installed: skipped (`make bench` installs it)")
            continue
        found[f"{package} {version(package)} {label}"] = make
    return found


def main(only: str | None = None) -> list[dict]:
    set_threads(2)
    torch.manual_seed(0)
    records = []
    cases = [c for c in CASES if only is None or only in c[0]]
    if not cases:
        raise SystemExit(f"--case {only!r}: no case matches; cases: {[c[0] for c in CASES]}")
    for case, sizes, density, target, source, peer_keys in cases:
        x, labels, weights = make_data(sizes, density)
        contestants = {"spikeflow": OURS[source](weights), **{name: make(weights) for name, make in peers(peer_keys).items()}}
        counts = {}
        for name, fn in contestants.items():
            out = fn(x, labels).detach()
            counts[name] = float(out.sum())
            print(f"{case}: {name} output spike rate {float(out.mean()):.4f}", flush=True)
        if source == "nir synaptic":  # an exact import: the same spikes up to float32 rounding of the products
            for name, count in counts.items():
                assert abs(count - counts["spikeflow"]) <= 1e-3 * counts["spikeflow"], f"{case}: spike counts differ: {counts}"
        times = interleaved_medians({name: (lambda fn=fn: fn(x, labels)) for name, fn in contestants.items()}, repeats=5, warmup=1)
        ours = times.pop("spikeflow")
        print(f"{case}: spikeflow {ours * 1e3:.1f} ms; " + "; ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()), flush=True)
        for name, value in sorted(times.items(), key=lambda kv: kv[1]):
            records.append(record(case, "train step fwd+bwd (s)", ours, name, value, target))
    if only is not None:  # keep the records of the cases not run
        path = Path(__file__).parent / "results" / f"{Path(__file__).stem}.json"
        ran = {c[0] for c in cases}
        kept = [r for r in json.loads(path.read_text()) if r["case"] not in ran] if path.exists() else []
        records = kept + records
    write_results(__file__, records)
    return records


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run only the cases whose name contains this text")
    main(parser.parse_args().case)
