"""Simulation speed: numba-event against Brian2 and against the torch forward.

(a) 10,000 LIF neurons, 10 million random recurrent synapses (1,000 per neuron), each neuron driven
    by its own 15 Hz Poisson input, dt 0.1 ms, 1 s of biological time, one thread: numba-event
    against Brian2 runtime (cython) and cpp_standalone on the same network and the same input
    spikes (t = 0 included), in float64 and again in float32 (Brian2's ``default_float_dtype`` set
    to match). Metric: synaptic events per second (recurrent spikes x fan-out / seconds), each side
    counting its own spikes; the spike counts are asserted equal within 1% (see
    ``SPIKE_COUNT_TOLERANCE``) and reported as a record of their own.
    Both sides are timed the same two ways, taking turns in every repeat (interleaved):
    "set-up + run" starts from the same arrays (numba: lowering the graph to its CSR program, then
    the run; Brian2 runtime: building the Network and ``Network.run``, which regenerates code
    objects each run while Cython's cache holds the compiled modules; cpp_standalone: one whole
    execution of the built binary) and "run only" (numba: the run on the lowered program; Brian2:
    its own timer of the simulation loop, ``_last_run_time``). The first Brian2 call (code
    generation and compilation) is reported as compile time.
    The network is an ordinary IR graph whose recurrent Linear holds a sparse (CSR) weight, so the
    10,000 x 10,000 matrix (800 MB dense) never exists; a 1 x n all-ones sparse readout counts the
    population's spikes per step, so only [T, 1, 1] is recorded. numba runs through the public
    streaming ``Simulator`` on the Poisson spikes as events (binned per step into entries, never a
    dense 10,000 x 10,000 input), as Brian2 gets them from a SpikeGeneratorGroup; the timed call
    includes the binning. Brian2 runs one clock for all objects and its update is the same
    multiply-add (``v = a*v + x``).
    Also reported: numba first-call compile time (fresh cache) and cached start time (a new
    process that finds the cache).
(b) A trained-MLP-like network 64-128-10 (LIF hidden, LIF output) on sparse event input (5 %
    density, 100 steps) at batch 1: numba-event (streaming Simulator, reset per sample) against the
    torch no-grad forward of ``sf.to_torch(graph)``, time per sample, interleaved.
(c) The DigitSaccades spiking CNN of the zoo, ``saccade-cnn`` (trained here with its default seed and
    settings), 64 test digits, float64 on both sides: numba-event (streaming Simulator, lowered
    once, reset per sample) against the torch no-grad forward of ``sf.to_torch(graph)`` (built
    once), seconds per sample, at batch 1 on the same binned frames, at batch 1 from the raw
    events (numba bins them inside the timed call; torch gets the frames already binned), and at
    batches of 16 and 64. Both sides give the same spikes (asserted on every LIF, step and sample);
    the two are timed alternately, repeat by repeat, torch with 1 and with 2 threads (its faster
    median counts; numba's kernel is single-threaded).

Run: ``.venv/bin/python benchmarks/simulate.py [--scale 0.2] [--repeats 5] [--skip-brian2] [--only-cnn]``;
``--scale`` shrinks network (a) (neurons and fan-out) for a quick check.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved_medians, record, set_threads, write_results  # noqa: E402

DT, STEPS, TAU, RATE, W_IN, W_REC_STD = 1e-4, 10_000, 0.02, 15.0, 1.2, 0.02
CNN_CASE = "DigitSaccades CNN (saccade-cnn)"
MODES = ("set-up + run", "run only")
# Both sides integrate the same update from the same spikes, but Brian2 compiles with -ffast-math
# and sums synaptic input in its own order: a membrane within rounding of the threshold can fire
# on one side only, and the recurrent network then diverges from there, spike count staying close.
SPIKE_COUNT_TOLERANCE = 0.01


# ------------------------------------------------------------------------------ (a) network


def network(n: int, fan_out: int, seed: int = 0):
    """CSR (by source) of the recurrent weights, and the Poisson input spikes [STEPS, n]."""
    rng = np.random.default_rng(seed)
    targets = np.concatenate([np.sort(rng.choice(n, fan_out, replace=False)) for _ in range(n)]).astype(np.int64)
    sources = np.repeat(np.arange(n, dtype=np.int64), fan_out)
    weights = rng.normal(0.0, W_REC_STD, n * fan_out)
    spikes = rng.random((STEPS, n)) < RATE * DT
    return sources, targets, weights, spikes


def network_graph(n, sources, targets, weights):
    """input -> Scale(W_IN) -> LIF <- sparse recurrent Linear (a delayed edge); LIF -> sparse
    all-ones readout -> Output of shape (1,), the population spike count per step."""
    import scipy.sparse as sparse

    import spikeflow as sf
    from spikeflow.ir import nodes as nd

    recurrent = sparse.csr_array((weights, (targets, sources)), shape=(n, n))  # rows are targets
    readout = sparse.csr_array((np.ones(n), (np.zeros(n, np.int64), np.arange(n))), shape=(1, n))
    return sf.Graph(
        {
            "input": nd.Input(shape=(n,)),
            "scale": nd.Scale(scale=W_IN),
            # r = TAU / DT makes the input gain c = g * r one: an input of w moves v by w, as in Brian2
            "lif": nd.LIF(tau=TAU, v_threshold=1.0, r=TAU / DT, reset="zero"),
            "recurrent": nd.Linear(weight=recurrent),
            "readout": nd.Linear(weight=readout),
            "count": nd.Output(shape=(1,)),
        },
        [("input", "scale"), ("scale", "lif"), ("lif", "recurrent"), ("recurrent", "lif"), ("lif", "readout"), ("readout", "count")],
        dt=DT,
    )


def numba_simulator(n, sources, targets, weights, precision="float64"):
    """The streaming numba-event simulator of :func:`network_graph` (lowered once; the sparse
    weights stay CSR). Nothing is recorded, so the input Scale folds into the LIF update."""
    from spikeflow.backends import Simulator

    sim = Simulator(network_graph(n, sources, targets, weights), backend="numba-event", sensor_size=(n,), precision=precision)
    assert sim.engine.program.layouts == {"recurrent": "csr-columns", "readout": "csr-columns"}
    return sim


def poisson_events(spikes):
    """The input spikes as tonic-style events (x = neuron, t in µs, mid-bin), as a sensor sends them."""
    t_idx, i_idx = np.nonzero(spikes)
    events = np.zeros(t_idx.size, dtype=[("x", np.int64), ("t", np.float64), ("p", np.int64)])
    events["x"], events["t"] = i_idx, (t_idx + 0.5) * DT * 1e6
    return events


def run_numba(sim, events):
    """One second from rest on event input (binned per step, never densified). Returns the spike
    count and the recurrent synaptic events (the readout adds one event per spike)."""
    sim.reset()
    res = sim.step(events, n_steps=STEPS)
    count = int(res.output.sum())
    return count, res.stats["synaptic_events"] - count


def run_numba_dense(sim, spikes):
    """As :func:`run_numba` with the dense ``[T, 1, n]`` input (800 MB of float64 at full scale)."""
    sim.reset()
    res = sim.step(spikes[:, None, :].astype(np.float64))
    count = int(res.output.sum())
    return count, res.stats["synaptic_events"] - count


class Brian2Run:
    """The same network in Brian2 on the same input spikes (t = 0 included), with ``precision`` as
    Brian2's default float type (state variables and weights); all objects share one clock.

    :meth:`first` builds, generates code, compiles and runs once (the compile time); each
    :meth:`once` then returns (set-up + run seconds, run-only seconds, spike count). Runtime
    (cython): set-up + run is a new ``Network`` built from the arrays and ``Network.run`` (which
    regenerates its code objects on every run; Cython's cache holds the compiled modules), run only
    is Brian2's own timer of the simulation loop (``device._last_run_time``, code generation
    excluded). cpp_standalone: the binary, built once, is re-executed; set-up + run is that whole
    execution (loading arrays, creating the synapses, running, writing results), run only the
    binary's own timer of the simulation loop.
    """

    def __init__(self, n, sources, targets, weights, spikes, target: str, precision: str = "float64"):
        import brian2 as b2

        self.b2, self.target = b2, target
        self.args = n, sources, targets, weights, spikes
        self.saved = b2.prefs.codegen.target, b2.prefs.core.default_float_dtype
        b2.prefs.core.default_float_dtype = getattr(np, precision)
        if target == "cpp_standalone":
            b2.set_device("cpp_standalone", directory=tempfile.mkdtemp(prefix="sf_bench_brian2_"), build_on_run=True)
        else:
            b2.prefs.codegen.target = target

    def build(self):
        b2 = self.b2
        n, sources, targets, weights, spikes = self.args
        clock = b2.Clock(DT * b2.second, name="sf_clock")  # one clock: several would slow Brian2's loop
        a = 1.0 - DT / TAU
        group = b2.NeuronGroup(n, "v : 1\nx : 1", threshold="v > 1.0", reset="v = 0.0", clock=clock, name="sf_lif")
        group.run_regularly(f"v = {a!r}*v + x\nx = 0", clock=clock, when="groups", name="sf_update")
        t_idx, i_idx = np.nonzero(spikes)
        # input spikes are delivered before the update of their own step, as in the IR (Brian2's
        # synapses slot comes after the update and would count them one step late)
        source = b2.SpikeGeneratorGroup(n, i_idx, t_idx * clock.dt, clock=clock, when="before_groups", order=0, name="sf_poisson")
        feed = b2.Synapses(source, group, on_pre=f"x_post += {W_IN!r}", clock=clock, name="sf_feed")
        feed.connect(j="i")
        feed.pre.when, feed.pre.order = "before_groups", 1
        recurrent = b2.Synapses(group, group, "w : 1 (constant)", on_pre="x_post += w", clock=clock, name="sf_recurrent")
        recurrent.connect(i=sources, j=targets)
        recurrent.w = weights
        self.monitor = b2.SpikeMonitor(group, name="sf_spikes")
        # fixed names: the generated code (and Cython's compile cache) is the same every run
        return b2.Network(group, source, feed, recurrent, self.monitor, name="sf_net"), clock

    def first(self) -> float:
        """Seconds of the first call: code generation, compilation, set-up and one run."""
        start = time.perf_counter()
        net, clock = self.build()
        net.run(STEPS * clock.dt, namespace={})
        return time.perf_counter() - start

    def once(self) -> tuple[float, float, int]:
        device = self.b2.get_device()
        start = time.perf_counter()
        if self.target == "cpp_standalone":
            device.run(with_output=False)
        else:
            net, clock = self.build()
            net.run(STEPS * clock.dt, namespace={})
        return time.perf_counter() - start, float(device._last_run_time), int(self.monitor.num_spikes)

    def close(self) -> None:
        b2 = self.b2
        b2.prefs.codegen.target, b2.prefs.core.default_float_dtype = self.saved
        if self.target == "cpp_standalone":
            from brian2.devices.device import reset_device

            b2.get_device().reinit()
            reset_device()


def compile_times() -> tuple[float, float]:
    """Seconds to the first result in a new process: with an empty numba cache, then with it filled."""
    code = (
        "import time; start = time.perf_counter(); import numpy as np; import spikeflow as sf; "
        "g = sf.Graph.sequential(sf.ir.Linear(weight=np.ones((2, 3))), sf.ir.LIF(tau=0.01, v_threshold=0.5)); "
        "sf.simulate(g, np.ones((3, 1, 3)), backend='numba-event'); print(time.perf_counter() - start)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**__import__("os").environ, "NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": "1"}
        first = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
        cached = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
    return first, cached


# ---------------------------------------------------------------------------------- (b) MLP


def mlp(seed: int = 0):
    import spikeflow as sf
    from spikeflow.ir import nodes as n

    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(64,)),
        n.Linear(weight=rng.normal(0, 0.5, (128, 64))),
        n.LIF(tau=0.01, v_threshold=1.0, r=10.0),
        n.Linear(weight=rng.normal(0, 0.3, (10, 128))),
        n.LIF(tau=0.01, v_threshold=1.0, r=10.0),
        dt=1e-3,
    )


# ---------------------------------------------------------------------------------- (c) CNN


def saccade_cnn_case(repeats: int, samples: int = 64) -> list[dict]:
    """Case (c): the trained DigitSaccades CNN (saccade-cnn), numba-event against the torch forward."""
    import statistics

    import torch

    import spikeflow as sf
    from spikeflow import workflows
    from spikeflow.backends import Simulator

    from spikeflow.datasets import digit_saccade_frames

    with tempfile.TemporaryDirectory() as tmp:
        # trained in a child process: training starts numba's and torch's thread pools, whose
        # spinning threads would otherwise be timed along with the forward passes
        code = ("import sys; from spikeflow import workflows; "
                "r = workflows.train_saccade_cnn(sys.argv[1], progress=False, data_root=sys.argv[1] + '/data'); print(r['test_acc'])")
        accuracy = float(subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True).stdout.split()[-1])
        graph = sf.load(Path(tmp) / "saccade_cnn.h5")
        config = {"data_root": Path(tmp) / "data", "config": dict(workflows.CNN_DEFAULTS)}
        events = workflows.saccade_test_events(config, samples)
        frames = digit_saccade_frames(config["data_root"], n_bins=workflows.CNN_DEFAULTS["bins"], time_major=True, progress=False)
    x = frames["test"][0][:, :samples].astype(np.float64)  # [T, N, 2, 34, 34] event counts
    steps = x.shape[0]
    checked = Simulator(graph, backend="numba-event", sensor_size=workflows.SENSOR_SIZE, record=["lif1", "lif2"])
    sim = Simulator(graph, backend="numba-event", sensor_size=workflows.SENSOR_SIZE)  # timed: outputs only, as torch's forward
    net = sf.to_torch(graph, dtype=torch.float64).eval()
    xt = torch.from_numpy(x)

    def numba_run(b, xs=None, sim=sim):
        sim.reset()
        return sim.step(xs if xs is not None else x[:, b : b + 1] if isinstance(b, int) else x[:, b], n_steps=steps)

    def torch_run(b):
        with torch.no_grad():
            return net(xt[:, b : b + 1] if isinstance(b, int) else xt[:, b])

    # equal work: the same spikes on every LIF, step and sample, from frames and from raw events
    with torch.no_grad():
        _, spikes = net.run(xt, record=["lif1", "lif2"])
    for b in range(samples):
        for res in (numba_run(b, sim=checked), numba_run(b, events[b], sim=checked)):
            for name in ("lif1", "lif2"):
                assert np.array_equal(res.spikes[name][:, 0], spikes[name][:, b].numpy()), f"{name} spikes differ, sample {b}"
    total = int(sum(spikes[k].sum() for k in spikes))
    print(f"DigitSaccades CNN: test accuracy {accuracy:.3f}; {total / samples:.0f} LIF spikes per sample, identical in "
          f"numba-event and torch")

    def alternate(ours, theirs):
        """Median seconds of numba and of torch, timed alternately (warm-up first) so that both see
        the same load; torch runs with 1 and with 2 threads and its faster median counts (on a
        loaded machine its 2-thread OpenMP pool can wait on a busy core)."""
        sides = [(ours, None, []), (theirs, 1, []), (theirs, 2, [])]
        for fn, threads, _ in sides:
            if threads:
                torch.set_num_threads(threads)
            fn()
        for _ in range(repeats):
            for fn, threads, times in sides:
                if threads:
                    torch.set_num_threads(threads)
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        torch.set_num_threads(2)
        return statistics.median(sides[0][2]), min(statistics.median(sides[1][2]), statistics.median(sides[2][2]))

    case = f"{CNN_CASE}, {samples} test digits, float64"
    peer = "torch no-grad forward (best of 1 and 2 threads)"
    records = []
    ours, theirs = alternate(lambda: [numba_run(b) for b in range(samples)], lambda: [torch_run(b) for b in range(samples)])
    records.append(record(f"{case}, batch 1, binned frames", "seconds per sample", ours / samples, f"{peer}, batch 1",
                          theirs / samples, 3.0))
    ours, theirs = alternate(lambda: [numba_run(b, events[b]) for b in range(samples)], lambda: [torch_run(b) for b in range(samples)])
    records.append(record(f"{case}, batch 1, numba-event from raw events (binning timed)", "seconds per sample", ours / samples,
                          f"{peer} on binned frames, batch 1", theirs / samples, 3.0))
    for batch in (16, 64):
        chunks = [slice(i, i + batch) for i in range(0, samples, batch)]
        ours, theirs = alternate(lambda: [numba_run(c) for c in chunks], lambda: [torch_run(c) for c in chunks])
        records.append(record(f"{case}, batch {batch}, binned frames", "seconds per sample", ours / samples,
                              f"{peer}, batch {batch}", theirs / samples, 1.0))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 10,000 neurons and 1,000 fan-out in (a)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-brian2", action="store_true")
    parser.add_argument("--only-cnn", action="store_true", help="run case (c) only, replacing its records in the results file")
    args = parser.parse_args()
    import spikeflow.backends as backends

    records = []
    set_threads(2)
    records += saccade_cnn_case(args.repeats)
    if args.only_cnn:
        import json

        from _common import RESULTS

        old = RESULTS / "simulate.json"
        kept = [r for r in json.loads(old.read_text()) if not r["case"].startswith(CNN_CASE)] if old.exists() else []
        print(f"wrote {write_results(__file__, kept + records)}")
        return

    # (a) ----------------------------------------------------------------------------------
    set_threads(1)
    n = max(int(10_000 * args.scale), 10)
    fan_out = max(int(1_000 * args.scale), 1)
    case = f"LIF {n} neurons, {n * fan_out / 1e6:g}M synapses, 1 s at 0.1 ms"
    first, cached = compile_times()
    print(f"numba compile (first call, empty cache): {first:.2f} s; cached start: {cached:.2f} s")
    sources, targets, weights, spikes = network(n, fan_out)
    poisson = poisson_events(spikes)
    compiles = []
    for precision in ("float64", "float32"):
        sim = numba_simulator(n, sources, targets, weights, precision)
        count, events = run_numba(sim, poisson)
        if precision == "float64":
            assert (count, events) == run_numba_dense(sim, spikes)  # the dense-input path gives the same network
        print(f"numba-event {precision}: {count / n:.1f} Hz mean rate, {count:,} spikes, {events:,} synaptic events")
        if args.skip_brian2:
            continue

        def ours_setup_and_run():
            """Lowering from the same arrays Brian2 starts from, then the run."""
            start = time.perf_counter()
            run_numba(numba_simulator(n, sources, targets, weights, precision), poisson)
            return time.perf_counter() - start

        def ours_run_only():
            start = time.perf_counter()
            run_numba(sim, poisson)
            return time.perf_counter() - start

        for target, label, goal in (("cython", "Brian2 runtime (cython)", 3.0), ("cpp_standalone", "Brian2 cpp_standalone", 1.5)):
            peer = Brian2Run(n, sources, targets, weights, spikes, target, precision)
            ours, theirs, counts = {m: [] for m in MODES}, {m: [] for m in MODES}, set()
            try:
                first_call = peer.first()
                for _ in range(args.repeats):  # interleaved: each repeat runs both sides, both ways
                    ours["set-up + run"].append(ours_setup_and_run())
                    ours["run only"].append(ours_run_only())
                    total, run_only, spike_count = peer.once()
                    theirs["set-up + run"].append(total)
                    theirs["run only"].append(run_only)
                    counts.add(spike_count)
            finally:
                peer.close()
            (peer_count,) = counts  # Brian2 is deterministic: the same count every repeat
            gap = abs(peer_count - count) / count
            print(f"{label} {precision}: first call (code generation + compile + set-up + run) {first_call:.1f} s; "
                  f"spike count {peer_count:,} vs numba {count:,} ({100 * gap:.3f}% apart)")
            assert gap <= SPIKE_COUNT_TOLERANCE, f"{label} {precision}: spike counts {peer_count} vs {count} differ by {100 * gap:.2f}%"
            peer_events = peer_count * fan_out  # each spike reaches fan_out recurrent synapses, on both sides
            records.append(record(f"{case}, {precision}", "spike count in 1 s (equal up to float rounding)", count,
                                  f"{label}, {precision}", peer_count, 0.0, lower_is_better=False))
            for mode in MODES:
                t_ours, t_peer = statistics.median(ours[mode]), statistics.median(theirs[mode])
                print(f"  {mode}: numba-event {t_ours:.3f} s, {label} {t_peer:.3f} s")
                records.append(record(f"{case}, {precision}", f"synaptic events per second ({mode})", events / t_ours,
                                      f"{label}, {precision}", peer_events / t_peer, goal, lower_is_better=False))
            if precision == "float64":
                compiles.append((label, first_call - statistics.median(theirs["set-up + run"])))
    for label, seconds in compiles:  # informational: numba's first call with an empty cache against the peer's build
        records.append(record(f"compile before the first result ({case})", "seconds (first call minus set-up + run)", first, label, seconds, 0.0))
    # informational: how much the on-disk cache saves (ours: cached start, peer: first call with an empty cache)
    records.append(record("numba start in a new process", "seconds to first result (cached)", cached, "numba first call (compiling)", first, 0.0))

    # (b) ----------------------------------------------------------------------------------
    set_threads(2)
    import torch

    import spikeflow as sf

    g = mlp()
    rng = np.random.default_rng(1)
    x = (rng.random((100, 1, 64)) < 0.05).astype(np.float64)
    sim = backends.Simulator(g, backend="numba-event")

    def ours_b():
        sim.reset()
        return sim.step(x)

    net = sf.to_torch(g, dtype=torch.float64).eval()
    xt = torch.from_numpy(x)

    def torch_b():
        with torch.no_grad():
            return net(xt)

    y_ours = ours_b().output
    y_torch = torch_b()
    y_torch = (y_torch[0] if isinstance(y_torch, tuple) else y_torch).numpy()
    print(f"MLP outputs identical to torch: {np.array_equal(y_ours, y_torch)} ({y_ours.sum():.0f} output spikes)")
    times = interleaved_medians({"ours": ours_b, "torch": torch_b}, repeats=max(args.repeats, 20))
    t_ours, t_torch = times["ours"], times["torch"]
    records.append(record("MLP 64-128-10 LIF, 100 steps, batch 1, 5% input", "seconds per sample", t_ours, "torch no-grad forward", t_torch, 5.0))
    path = write_results(__file__, records)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
