"""Peak training memory and time per step on long sequences: spikeflow's strategies vs snnTorch,
Norse and SpikingJelly.

Case (the one issue 14 measured): ``Linear(700,256)-LIF-Linear(256,20)-LIF``, batch 32, 5% Bernoulli
input spikes, float32, one training step (forward + backward of cross-entropy on output spike
counts), T in {1000, 4000, 16000}, 2 threads. The neuron is the same everywhere: beta = 0.95,
threshold 1, subtractive reset detached from the graph, arctan surrogate.

* spikeflow, per strategy of :func:`spikeflow.train.long_sequences.train_step`: ``full`` (today's
  BPTT: autograd over the whole sequence), ``bptt`` (lean exact BPTT, chunks of ``CHUNK`` steps),
  ``tbptt`` (truncated every ``CHUNK`` steps) and ``ottt`` (online, chunks of ``CHUNK`` steps).
* snnTorch 1.0: ``snn.Leaky`` stepped in a Python loop (its documented way).
* Norse 1.1: ``LIFBoxCell`` lifted over time (``norse.torch.Lift``).
* SpikingJelly 2.0: ``LIFNode(step_mode="m", decay_input=False, v_reset=None, detach_reset=True)``
  with ``surrogate.ATan``, torch backend (its cupy/triton backends need a GPU). It installs beside
  torch 2.13 only with ``--no-deps`` (its declared dependencies pull another torchaudio); the
  Makefile's ``bench`` target does that.

How memory is measured (the same for every library): each (library, strategy, T) runs in a fresh
subprocess with glibc's dynamic mmap threshold switched off (``MALLOC_MMAP_THRESHOLD_=65536``:
every allocation of 64 KiB or more is its own mapping, given back to the OS when freed, so freed
memory of an earlier step cannot hide a later peak). The worker builds the weights and the input,
runs one warm-up step on 200 steps (numba compilation, allocator caches), resets the kernel's peak
resident-set counter (``/proc/self/clear_refs``), then runs the timed steps; the figure is the peak
resident set (``VmHWM``) minus the resident set just before the step, i.e. the peak above the
input, the weights and the libraries. ``tracemalloc`` would not see torch's allocator, and torch
has no CPU counterpart of ``torch.cuda.max_memory_allocated``; the RSS high-water mark sees every
allocator (torch, NumPy, numba) and counts only memory that was touched. A step that fails to
allocate under the cap (``CAP_GIB`` of address space more than before the step, set because the
machine is shared) is reported as failed.

Records: peak memory (MB) and time per step (s) of each spikeflow strategy against each peer
(target at T=4000 for exact BPTT: 16x less memory than snnTorch), spikeflow's lean BPTT against
its own full BPTT (time target: no more than 1.3x slower), and the planner's prediction against
the measured peak of every spikeflow case (target: within 20%).

Lean against full BPTT is timed in ``PAIRS`` interleaved pairs of processes (full then lean, then
lean then full, ...) at each thread count of ``--pair-threads`` (default 1 and 2): a load change on
the shared machine hits both sides alike, and the record holds the median of each side. The first
pair at the main thread count is the one whose peaks and times the other records use.

Run: ``.venv/bin/python benchmarks/memory.py`` (``--quick``: T=1000 only; ``--lengths 4000,16000``;
``--threads N``: N threads for every library, default 2; ``--pairs N``: interleaved full/lean
pairs, default 3; ``--pair-lengths 1000,4000``: the lengths timed in pairs (others: one pair);
``--pair-threads 1,2``; ``--timeout S`` per measuring process; ``--results NAME``: write
``results/NAME.json``). One timed step per process; a process that does not finish within the time
limit is reported as such.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import linear_layers, record, set_threads, write_results  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

B, SIZES, DENSITY = 32, (700, 256, 20), 0.05
DT, TAU, THRESHOLD = 1e-3, 20e-3, 1.0
BETA = 1 - DT / TAU
LENGTHS = (1000, 4000, 16000)
CHUNK = 100
WARMUP_STEPS = 200
CAP_GIB = 5.0
WORKER_TIMEOUT = 1200  # seconds per measuring process (--timeout)
RESULT_NAME = "memory"  # results/<name>.json (--results: a partial run kept apart)
STRATEGIES = ("full", "bptt", "tbptt", "ottt")
REPEATS = 1  # steps timed per process (the median is reported); long steps on a shared machine
PEERS = ("snntorch", "norse", "spikingjelly")
PAIRS = 3  # interleaved full / lean process pairs per thread count (--pairs)
PAIR_LENGTHS = (1000, 4000)  # lengths timed in PAIRS pairs (--pair-lengths); the others in one
PAIR_THREADS = (1, 2)  # thread counts of the lean-vs-full timing (--pair-threads)


def make_data(T: int, seed: int = 0):
    """Input spikes ``[T, B, 700]`` (drawn in slices: no [T, B, 700] float temporary), labels, weights."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.empty(T, B, SIZES[0])
    for s in range(0, T, 500):
        x[s : s + 500] = (torch.rand(x[s : s + 500].shape, generator=gen) < DENSITY).float()
    labels = torch.randint(0, SIZES[-1], (B,), generator=gen)
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b) for a, b in zip(SIZES, SIZES[1:])]
    return x, labels, [(lay.weight.detach().clone(), lay.bias.detach().clone()) for lay in layers]


def spikeflow_graph(weights):
    import spikeflow as sf
    from spikeflow.ir import nodes as n

    layers = []
    for w, b in weights:
        layers += [n.Affine(weight=w.double().numpy(), bias=b.double().numpy()), n.LIF(tau=TAU, v_threshold=THRESHOLD, r=TAU / DT, reset="subtract")]
    return sf.Graph.sequential(n.Input(shape=(weights[0][0].shape[1],)), *layers, dt=DT)


def _loss(labels):
    ce = nn.CrossEntropyLoss()
    return lambda y: ce(y.sum(0), labels)


def spikeflow_step(weights, strategy):
    import spikeflow as sf
    from spikeflow.train.long_sequences import train_step

    net = sf.to_torch(spikeflow_graph(weights)).float()

    def step(x, labels):
        net.zero_grad(set_to_none=True)
        return float(train_step(net, x, _loss(labels), strategy=strategy, chunk=CHUNK).scores.sum())

    return step


def snntorch_step(weights, strategy):
    import snntorch as snn

    fcs = linear_layers(weights)
    lifs = [snn.Leaky(beta=BETA, threshold=THRESHOLD) for _ in fcs]

    def step(x, labels):
        for fc in fcs:
            fc.zero_grad(set_to_none=True)
        mems = [lif.init_leaky() for lif in lifs]
        outs = []
        for t in range(x.shape[0]):
            h = x[t]
            for i, (fc, lif) in enumerate(zip(fcs, lifs)):
                h, mems[i] = lif(fc(h), mems[i])
            outs.append(h)
        out = torch.stack(outs)
        _loss(labels)(out).backward()
        return float(out.sum())

    return step


def norse_step(weights, strategy):
    import norse.torch as norse

    fcs = linear_layers(weights)
    p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1 / TAU), v_th=torch.as_tensor(THRESHOLD * DT / TAU))
    lifts = [norse.Lift(norse.LIFBoxCell(p, dt=DT)) for _ in fcs]

    def step(x, labels):
        for fc in fcs:
            fc.zero_grad(set_to_none=True)
        h = x
        for fc, lift in zip(fcs, lifts):
            h, _ = lift(fc(h))
        _loss(labels)(h).backward()
        return float(h.sum())

    return step


def spikingjelly_step(weights, strategy):
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    fcs = linear_layers(weights)
    modules = []
    for fc in fcs:
        modules += [layer.SeqToANNContainer(fc), neuron.LIFNode(tau=1 / (1 - BETA), decay_input=False, v_threshold=THRESHOLD, v_reset=None,
                                                                 detach_reset=True, surrogate_function=surrogate.ATan(), step_mode="m")]
    net = nn.Sequential(*modules)

    def step(x, labels):
        net.zero_grad(set_to_none=True)
        functional.reset_net(net)
        out = net(x)
        _loss(labels)(out).backward()
        return float(out.sum())

    return step


MAKERS = {"spikeflow": spikeflow_step, "snntorch": snntorch_step, "norse": norse_step, "spikingjelly": spikingjelly_step}
PEER_NAMES = {"snntorch": "snntorch 1.0 Leaky", "norse": "norse 1.1 LIFBoxCell (Lift)", "spikingjelly": "spikingjelly 2.0 LIFNode (torch)"}


def worker(lib: str, strategy: str, T: int, repeats: int, threads: int) -> dict:
    """One measurement in this (fresh) process: peak RSS above the state before the step, time."""
    from spikeflow.train.planner import _status, peak_rss_above

    set_threads(threads)
    x, labels, weights = make_data(T)
    step = MAKERS[lib](weights, strategy)
    step(x[:WARMUP_STEPS], labels)
    cap = int(_status("VmSize") + CAP_GIB * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))
    times, spikes, peak = [], None, 0
    try:
        for _ in range(repeats):
            p, seconds, spikes = peak_rss_above(lambda: step(x, labels))
            peak, times = max(peak, p), times + [seconds]
    except (RuntimeError, MemoryError) as err:
        return {"ok": False, "error": str(err).splitlines()[0][:200], "peak": _status("VmHWM")}
    times.sort()
    return {"ok": True, "peak": peak, "time": times[len(times) // 2], "spikes": spikes}


def measure(lib: str, strategy: str, T: int, repeats: int, threads: int) -> dict:
    from spikeflow.train.planner import measure_env

    env = dict(measure_env(), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", lib, strategy, str(T), str(repeats), str(threads)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"did not finish one step within {WORKER_TIMEOUT} s", "peak": float("nan")}
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1][:200], "peak": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_pairs(T: int, threads: int, pairs: int, first: dict | None = None) -> dict[str, list[dict]]:
    """``pairs`` interleaved (full, lean) measurements in fresh processes, the order alternating
    from pair to pair; ``first``: an already measured first pair."""
    runs: dict[str, list[dict]] = {"full": [], "bptt": []}
    if first is not None:
        for s in runs:
            runs[s].append(first[s])
    for i in range(len(runs["full"]), pairs):
        for s in ("full", "bptt") if i % 2 == 0 else ("bptt", "full"):
            runs[s].append(measure("spikeflow", s, T, 1, threads))
    return runs


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main(lengths=LENGTHS, threads: int = 2, pairs: int = PAIRS, pair_lengths=PAIR_LENGTHS, pair_threads=PAIR_THREADS) -> list[dict]:
    import spikeflow as sf

    set_threads(threads)
    records, rows = [], []
    mb = 2.0**20
    _, _, weights = make_data(8)
    # One plan per strategy, made before any measurement; its model predicts every T.
    plans = {s: sf.train.plan(spikeflow_graph(weights), T=lengths[0], batch=B, strategy=s, chunk=CHUNK, input_density=DENSITY, threads=threads)
             for s in STRATEGIES}
    for s, p in plans.items():
        print(f"plan: {p}", flush=True)
    for T in lengths:
        repeats = REPEATS
        n_pairs = pairs if T in pair_lengths else 1
        ours = {s: measure("spikeflow", s, T, repeats, threads) for s in STRATEGIES}  # full, lean: the first pair
        timed = {threads: time_pairs(T, threads, n_pairs, {s: ours[s] for s in ("full", "bptt")})}
        for n in pair_threads:
            if n != threads:
                timed[n] = time_pairs(T, n, n_pairs)
        for n, runs in timed.items():
            for i, (f, b) in enumerate(zip(runs["full"], runs["bptt"])):
                if f["ok"] and b["ok"]:
                    print(f"T={T} {n} thread(s), pair {i}: full {f['time']:.2f} s, lean {b['time']:.2f} s, peaks {f['peak'] / mb:.1f} / "
                          f"{b['peak'] / mb:.1f} MiB", flush=True)
                rows.append({"T": T, "name": f"pair {i}, {n} thread(s)", "full": f, "bptt": b})
        peers = {p: measure(p, "full", T, repeats, threads) for p in PEERS}
        for name, res in [*(("spikeflow " + s, r) for s, r in ours.items()), *peers.items()]:
            line = f"T={T} {name}: " + (f"peak {res['peak'] / mb:.1f} MiB, {res['time']:.2f} s/step, output spikes {res['spikes']:.0f}"
                                       if res["ok"] else f"failed under the {CAP_GIB:g} GiB cap: {res['error']}")
            print(line, flush=True)
            rows.append({"T": T, "name": name, **res})
        case = f"700-256-20 LIF, batch 32, 5% input, T={T}"
        ref = [r["spikes"] for r in [ours["full"], ours["bptt"], *peers.values()] if r["ok"]]
        # float32 rounding differs between the libraries' update orders: a few spikes flip.
        assert max(ref) - min(ref) <= 0.05 * max(ref) + 10, f"output spike counts differ: {ref}"
        for s, r in ours.items():
            if not r["ok"]:
                continue
            for p, pr in peers.items():
                if not pr["ok"]:
                    continue
                target = 16.0 if (s == "bptt" and p == "snntorch" and T == 4000) else 0.0
                records.append(record(f"{case}, {s}", "peak memory above input (MiB)", r["peak"] / mb, PEER_NAMES[p], pr["peak"] / mb, target))
                records.append(record(f"{case}, {s}", "train step (s)", r["time"], PEER_NAMES[p], pr["time"], 0.0))
            predicted = plans[s].peak_at(T)
            error = abs(predicted - r["peak"]) / r["peak"]
            # ratio 1 / (1 + error): >= 1 / 1.2 means within 20%
            records.append(record(f"{case}, {s}", "planner peak prediction (MiB) vs measured", predicted / mb, "measured (RSS high-water mark)",
                                  r["peak"] / mb, 1 / 1.2) | {"ratio": 1 / (1 + error)})
        if ours["full"]["ok"] and ours["bptt"]["ok"]:
            records.append(record(f"{case}, bptt vs full", "peak memory above input (MiB)", ours["bptt"]["peak"] / mb, "spikeflow full BPTT (today)",
                                  ours["full"]["peak"] / mb, 0.0))
        for n, runs in timed.items():
            ok = [(f["time"], b["time"]) for f, b in zip(runs["full"], runs["bptt"]) if f["ok"] and b["ok"]]
            if ok:
                full_t, lean_t = _median([f for f, _ in ok]), _median([b for _, b in ok])
                records.append(record(f"{case}, bptt vs full, {n} thread(s), median of {len(ok)} interleaved pairs", "train step (s)", lean_t,
                                      "spikeflow full BPTT (today)", full_t, 1 / 1.3))
        _write(records, rows)  # after every T: a stopped run keeps what it measured
    return records


def _write(records: list[dict], rows: list[dict]) -> None:
    from spikeflow._atomic import atomic_path

    write_results(RESULT_NAME + ".py", records)
    raw = Path(__file__).parent / "results" / "raw"  # not a records file: kept out of the README table
    raw.mkdir(parents=True, exist_ok=True)
    with atomic_path(raw / f"{RESULT_NAME}.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))))
    else:
        threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
        lengths = tuple(int(t) for t in sys.argv[sys.argv.index("--lengths") + 1].split(",")) if "--lengths" in sys.argv else LENGTHS
        if "--timeout" in sys.argv:
            WORKER_TIMEOUT = int(sys.argv[sys.argv.index("--timeout") + 1])
        if "--results" in sys.argv:
            RESULT_NAME = sys.argv[sys.argv.index("--results") + 1]

        def ints(flag: str, default):
            return tuple(int(v) for v in sys.argv[sys.argv.index(flag) + 1].split(",")) if flag in sys.argv else default

        main((1000,) if "--quick" in sys.argv else lengths, threads, ints("--pairs", (PAIRS,))[0], ints("--pair-lengths", PAIR_LENGTHS),
             ints("--pair-threads", PAIR_THREADS))
