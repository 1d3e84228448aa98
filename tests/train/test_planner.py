"""The memory planner: byte sizes, arguments, the budget's choice of chunk, the Trainer's
strategies, and the prediction against a measured peak."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError
from spikeflow.ir import nodes as n
from spikeflow.train.planner import Plan, choose_chunk, parse_bytes, plan


def _graph(n_in=40, hidden=32, n_out=4, seed=0):
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(n_in,)),
        n.Affine(weight=rng.normal(size=(hidden, n_in)) * 0.5, bias=np.zeros(hidden)),
        n.LIF(tau=0.02, v_threshold=1.0, r=20.0, reset="subtract"),
        n.Affine(weight=rng.normal(size=(n_out, hidden)) * 0.5, bias=np.zeros(n_out)),
        n.LIF(tau=0.02, v_threshold=1.0, r=20.0, reset="subtract"),
        dt=1e-3,
    )


@pytest.mark.parametrize("text, size", [("2GB", 2 * 10**9), ("512 MiB", 512 * 2**20), ("1.5gib", int(1.5 * 2**30)), (4096, 4096), ("10kb", 10**4)])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["", "2 parsecs", "-1GB", "GB", 0, True, None, [1]])
def test_parse_bytes_rejects_garbage(bad):
    with pytest.raises(DataError, match="memory budget"):
        parse_bytes(bad)


def test_plan_rejects_bad_arguments():
    g = _graph()
    with pytest.raises(DataError, match="unknown strategy"):
        plan(g, T=10, batch=2, strategy="rtrl")
    with pytest.raises(DataError, match="T must be"):
        plan(g, T=0, batch=2)
    with pytest.raises(DataError, match="chunk must be"):
        plan(g, T=10, batch=2, chunk=-3)
    with pytest.raises(DataError, match="Graph or GraphModule"):
        plan(torch.nn.Linear(2, 2), T=10, batch=2)


def test_choose_chunk_takes_the_largest_that_fits():
    model = {"c0": 1e6, "c1": 1e5, "c2": 100.0, "S": 1000}  # bytes: base, per chunk step, per step, per checkpoint
    peak = lambda k: 1e6 + 1e5 * k + 100.0 * 4000 + 1000 * -(-4000 // k)  # noqa: E731
    assert choose_chunk(model, "bptt", 4000, int(peak(256))) == 256
    assert choose_chunk(model, "bptt", 4000, int(peak(256)) - 1) == 128
    assert choose_chunk(model, "bptt", 100, 10**12) == 100  # never longer than the sequence
    with pytest.raises(DataError, match="no chunk size fits"):
        choose_chunk(model, "bptt", 4000, int(peak(8)) - 1)


@pytest.mark.slow
def test_budget_picks_the_largest_chunk_that_fits_and_the_model_is_consistent():
    g = _graph(n_in=300, hidden=256, n_out=10)
    p = plan(g, T=3000, batch=16, strategy="bptt", memory_budget="1GB", threads=1)
    assert isinstance(p, Plan) and p.fits and p.strategy == "bptt"
    assert p.checkpoint_bytes == 16 * (256 + 10) * 4  # the float32 membranes of both layers
    assert p.peak_at(3000, p.chunk) == pytest.approx(p.peak_bytes)
    # a budget between two chunk sizes' needs picks the larger that fits
    small, large = p.peak_at(3000, 64), p.peak_at(3000, 512)
    assert small < large
    tight = choose_chunk(p.model, "bptt", 3000, int((small + large) / 2))
    assert tight in (64, 128, 256) and p.peak_at(3000, tight) <= (small + large) / 2 < p.peak_at(3000, 2 * tight)
    with pytest.raises(DataError, match="no chunk size fits"):
        choose_chunk(p.model, "bptt", 3000, 1000)
    # truncated BPTT does not grow with T; full BPTT does
    flat = plan(g, T=500, batch=16, strategy="tbptt", chunk=50, threads=1)
    assert flat.peak_at(100_000) == pytest.approx(flat.peak_at(500), rel=0.2)


def test_trainer_lean_bptt_trains_like_plain_autograd():
    g = _graph(n_in=6, hidden=8, n_out=3)
    rng = np.random.default_rng(1)
    x = (rng.uniform(size=(12, 30, 6)) < 0.3).astype(np.float64)  # [N, T, ...]
    y = rng.integers(0, 3, 12)
    runs = {}
    for name, options in {"plain": {}, "bptt": {"strategy": "bptt", "chunk": 7}, "tbptt": {"tbptt": 30}}.items():
        trainer = sf.train.Trainer(sf.to_torch(g, dtype=torch.float64), epochs=2, batch_size=4, lr=1e-2, progress=False, **options)
        history = trainer.fit((x, y), val_data=(x, y))
        runs[name] = (history, [p.detach().clone() for p in trainer.model.parameters()])
    for name in ("bptt", "tbptt"):  # exact gradients (tbptt: one chunk = the whole sequence)
        assert runs[name][0]["val_acc"] == runs["plain"][0]["val_acc"]
        for a, b in zip(runs[name][1], runs["plain"][1]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    trainer = sf.train.Trainer(sf.to_torch(g, dtype=torch.float64), epochs=1, batch_size=4, progress=False, strategy="ottt", chunk=8)
    assert np.isfinite(trainer.fit((x, y))["loss"][0])


def test_trainer_strategy_errors():
    g = _graph()
    with pytest.raises(DataError, match="unknown strategy"):
        sf.train.Trainer(g, strategy="rtrl", progress=False)
    with pytest.raises(DataError, match="tbptt=5"):
        sf.train.Trainer(g, strategy="bptt", tbptt=5, progress=False)
    with pytest.raises(DataError, match="graph's module"):
        sf.train.Trainer(torch.nn.Linear(3, 2), strategy="bptt", progress=False)
    with pytest.raises(DataError, match="memory budget"):
        sf.train.Trainer(g, memory_budget="lots", progress=False)


def test_trainer_memory_budget_chooses_a_plan():
    g = _graph()
    rng = np.random.default_rng(2)
    x = (rng.uniform(size=(8, 400, 40)) < 0.05).astype(np.float32)
    y = rng.integers(0, 4, 8)
    trainer = sf.train.Trainer(g, epochs=1, batch_size=8, progress=False, memory_budget="4GB")
    trainer.fit((x, y))
    assert trainer.plan is not None and trainer.plan.strategy == "full" and trainer.plan.fits


_MEASURE = textwrap.dedent("""
    import json, sys, torch, numpy as np
    import spikeflow as sf
    from spikeflow.train.long_sequences import train_step
    from spikeflow.train.planner import peak_rss_above
    torch.set_num_threads(1)
    net = sf.to_torch(sf.load(sys.argv[1]))
    strategy, T = sys.argv[2], int(sys.argv[3])
    x = (torch.rand(T, 64, 300, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    loss = lambda y: (y.sum(0) ** 2).mean()
    train_step(net, x[:100], loss, strategy=strategy, chunk=64)
    net.zero_grad(set_to_none=True)
    print(json.dumps(peak_rss_above(lambda: train_step(net, x, loss, strategy=strategy, chunk=64))[0]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full", "bptt"])
def test_prediction_is_close_to_the_measured_peak(tmp_path, strategy):
    from spikeflow.train.planner import measure_env

    g = _graph(n_in=300, hidden=256, n_out=10)
    sf.save(g, tmp_path / "g.h5")
    T = 2500
    predicted = plan(g, T=T, batch=64, strategy=strategy, chunk=64, threads=1).peak_bytes
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "g.h5"), strategy, str(T)], env=measure_env(),
                         capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(predicted - measured) <= 0.25 * measured, (predicted, measured)
