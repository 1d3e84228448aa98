"""SpiNNaker 2 target: the export's reference executor against Brian2, and export time.

(a) 10,000 LIF neurons, 1,000,000 random recurrent synapses (100 per neuron), each neuron driven
    one-to-one by its own 15 Hz Poisson input, dt = the chip's 1 ms tick, 1 s (1,000 ticks),
    batch 1. The graph is exported (4-bit weights, per-population scale, Q14 decay chosen exactly
    representable: a = 1 - 1/16) and ``prog.run`` (the numba reference executor, one thread) is
    timed against Brian2 runtime (cython, float64) simulating the same quantised network (the
    dequantised graph's weights, threshold and decay), which is the software check py-spinnaker2
    users have. The executor is asserted bit-exact with ``sf.simulate(prog.graph,
    precision=prog.precision)``; Brian2's float64 spike count must be within 1 % of the executor's.
    Metric: synaptic events per second (each side's own spikes x fan-out + input spikes, divided by
    the run's wall time; median of the repeats after a warm-up run; the two sides' repeats
    alternate so that a shared machine's changing load falls on both alike; Brian2's code
    generation and compilation happen in the warm-up, and building each fresh network is not timed).
(b) Export time of a 100,000-neuron network of the same kind (20 recurrent synapses per neuron,
    2,000,000 synapses; quantise, partition, route and write every PE image), median of repeats.

Run: ``.venv/bin/python benchmarks/spinnaker2.py [--scale 0.1] [--repeats 5] [--skip-brian2]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, record, set_threads, write_results  # noqa: E402

DT, STEPS, TAU, RATE, W_IN, W_REC_STD = 1e-3, 1000, 16e-3, 15.0, 1.1, 0.05


def graph(n: int, fan_out: int, seed: int = 0, readout: bool = True):
    """input -> one-to-one Scale -> LIF <- sparse recurrent Linear (delayed edge); LIF -> all-ones
    Linear -> one leaky readout -> Output (as benchmarks/simulate.py: only [T, 1, 1] is recorded;
    Brian2 records its spikes with a SpikeMonitor)."""
    import scipy.sparse as sparse

    import spikeflow as sf
    from spikeflow.ir import nodes as nd

    rng = np.random.default_rng(seed)
    targets = np.concatenate([np.sort(rng.choice(n, fan_out, replace=False)) for _ in range(n)]).astype(np.int64)
    sources = np.repeat(np.arange(n, dtype=np.int64), fan_out)
    weights = rng.normal(0.0, W_REC_STD, n * fan_out)
    recurrent = sparse.csr_array((weights, (targets, sources)), shape=(n, n))
    if not readout:  # 100,000 inputs to one readout neuron would not fit a PE: show the population itself
        return sf.Graph(
            {"input": nd.Input(shape=(n,)), "drive": nd.Scale(scale=W_IN), "lif": nd.LIF(tau=TAU, v_threshold=1.0, r=TAU / DT, reset="zero"),
             "recurrent": nd.Linear(weight=recurrent), "output": nd.Output(shape=(n,))},
            [("input", "drive"), ("drive", "lif"), ("lif", "recurrent"), ("recurrent", "lif"), ("lif", "output")], dt=DT)
    readout = sparse.csr_array((np.ones(n), (np.zeros(n, np.int64), np.arange(n))), shape=(1, n))
    return sf.Graph(
        {"input": nd.Input(shape=(n,)), "drive": nd.Scale(scale=W_IN), "lif": nd.LIF(tau=TAU, v_threshold=1.0, r=TAU / DT, reset="zero"),
         "recurrent": nd.Linear(weight=recurrent), "readout": nd.Linear(weight=readout), "count": nd.LI(tau=1.0, r=1.0 / DT),
         "output": nd.Output(shape=(1,))},
        [("input", "drive"), ("drive", "lif"), ("lif", "recurrent"), ("recurrent", "lif"), ("lif", "readout"), ("readout", "count"),
         ("count", "output")], dt=DT)


def poisson(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((STEPS, 1, n)) < RATE * DT).astype(np.float64)


def brian2_runner(prog, x: np.ndarray):
    """The dequantised network in Brian2 runtime (cython, float64): a function that builds a fresh
    network (not timed), runs it (timed) and returns ``(spike count, run seconds)``."""
    import brian2 as b2

    g = prog.graph
    lif = g.nodes["lif"]
    n = x.shape[2]
    w = g.nodes["recurrent"].weight.tocoo()  # the readout only counts spikes: Brian2's SpikeMonitor does that
    w_in = float(np.asarray(g.nodes["drive"].scale).reshape(-1)[0])
    a = float(sf_coefficients(lif, g)["a"].reshape(-1)[0])
    thr = float(np.asarray(lif.v_threshold).reshape(-1)[0])
    b2.prefs.codegen.target = "cython"
    b2.prefs.core.default_float_dtype = np.float64

    def build():
        dt = DT * b2.second
        group = b2.NeuronGroup(n, "v : 1\nx : 1", threshold=f"v > {thr!r}", reset="v = 0.0", dt=dt, name="s2_lif")
        group.run_regularly(f"v = {a!r}*v + x\nx = 0", dt=dt, when="groups", name="s2_update")
        t_idx, i_idx = np.nonzero(x[:, 0, :])
        keep = t_idx > 0  # delivered after the update: sent one step early, as in benchmarks/simulate.py
        source = b2.SpikeGeneratorGroup(n, i_idx[keep], (t_idx[keep] - 1) * dt, dt=dt, name="s2_poisson")
        feed = b2.Synapses(source, group, on_pre=f"x_post += {w_in!r}", dt=dt, name="s2_feed")
        feed.connect(j="i")
        rec = b2.Synapses(group, group, "w : 1 (constant)", on_pre="x_post += w", dt=dt, name="s2_recurrent")
        rec.connect(i=w.col, j=w.row)
        rec.w = w.data
        mon = b2.SpikeMonitor(group, name="s2_spikes")
        return b2.Network(group, source, feed, rec, mon, name="s2_net"), mon, dt

    def run():
        net, mon, dt = build()
        start = time.perf_counter()
        net.run(STEPS * dt, namespace={})
        return int(mon.num_spikes), time.perf_counter() - start

    # the first input step is lost to the one-step-early trick; it holds ~0.15 % of the drive
    return run


def sf_coefficients(node, g):
    from spikeflow.ir.discretise import coefficients

    return coefficients(node, g.dt, g.integration)


def main() -> None:
    import spikeflow as sf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-brian2", action="store_true")
    args = parser.parse_args()
    set_threads(1)
    n, fan_out = int(10_000 * args.scale), 100
    tmp = Path(tempfile.mkdtemp(prefix="sf_bench_s2_"))
    records = []
    try:
        g = graph(n, fan_out)
        x = poisson(n)
        start = time.perf_counter()
        rep = sf.export(g, target="spinnaker2", path=tmp / "net", chip={"chips": 2}, picture=False)
        export_s = time.perf_counter() - start
        prog = sf.load_export(tmp / "net")
        res = prog.run(x, record=["lif"])
        ref = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=["lif"])
        assert np.array_equal(res.spikes["lif"], ref.spikes["lif"]) and np.array_equal(res.output, ref.output), "executor differs from numba"
        ours_spikes = int(res.spikes["lif"].sum())
        ours_events = ours_spikes * fan_out + int(x.sum())
        case = f"LIF {n} neurons, {n * fan_out} synapses, 1000 ticks of 1 ms, quantised (4-bit weights)"
        if args.skip_brian2:
            ours_s = median_time(lambda: prog.run(x), repeats=args.repeats)
        else:  # the two sides' repeats alternate, so a shared machine's changing load falls on both alike
            import brian2

            brian2_run = brian2_runner(prog, x)
            b_spikes = brian2_run()[0]  # warm-up: code generation and compilation
            prog.run(x)
            ours_t, b_t = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                prog.run(x)
                ours_t.append(time.perf_counter() - start)
                b_t.append(brian2_run()[1])
            ours_s, b_s = float(np.median(ours_t)), float(np.median(b_t))
            print("executor run seconds:", [round(t, 3) for t in ours_t])
            print("Brian2 run seconds:", [round(t, 3) for t in b_t])
        print(f"export {export_s:.2f} s: {rep.pes} PEs on {rep.chips} chips; executor {ours_spikes} spikes, {ours_s:.3f} s")
        if not args.skip_brian2:
            b_events = b_spikes * fan_out + int(x.sum())
            diff = abs(b_spikes - ours_spikes) / max(ours_spikes, 1)
            print(f"Brian2 {b_spikes} spikes ({100 * diff:.2f} % from the executor), {b_s:.3f} s")
            assert diff <= 0.01, f"Brian2 spike count {b_spikes} differs from the executor's {ours_spikes} by {100 * diff:.2f} %"
            records.append(record(case, "synaptic events per second", ours_events / ours_s, f"Brian2 {brian2.__version__} runtime (cython), float64",
                                  b_events / b_s, 3.0, lower_is_better=False))
        big, big_fan = int(100_000 * args.scale), 20
        g_big = graph(big, big_fan, seed=2, readout=False)

        def export_big():
            sf.export(g_big, target="spinnaker2", path=tmp / "big", chip={"chips": 8}, picture=False)

        big_s = median_time(export_big, repeats=max(1, args.repeats // 2), warmup=0)
        rep_big = sf.load_export(tmp / "big").report
        records.append(record(f"export LIF {big} neurons, {big * big_fan} synapses ({rep_big.pes} PEs, {rep_big.chips} chips)",
                              "seconds", big_s, "reported only", big_s, 0.0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(__file__, records)


if __name__ == "__main__":
    main()
