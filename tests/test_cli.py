import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spikeflow as sf
from spikeflow import cli
from spikeflow.cli import bench

SUBCOMMANDS = ("run", "demo", "train", "simulate", "export", "convert", "info", "sweep", "bench", "models")


def small_graph():
    return sf.Graph.sequential(
        sf.ir.Input(shape=(4,)),
        sf.ir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        sf.ir.LIF(tau=np.full(3, 0.01), v_threshold=np.ones(3)),
        dt=1e-3,
    )


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("module", ["spikeflow.cli", "spikeflow"])
def test_module_runs_as_a_script(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert all(name in done.stdout for name in SUBCOMMANDS)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"spikeflow {sf.__version__}"


def test_every_command_is_its_own_module():
    assert tuple(cli.COMMANDS) == SUBCOMMANDS
    for name in SUBCOMMANDS:
        module = __import__(f"spikeflow.cli.{name}", fromlist=["run"])
        assert callable(module.run) and callable(module.add_arguments) and module.HELP


def test_info_on_hdf5_and_nir_files(tmp_path, capsys):
    graph = small_graph()
    sf.save(graph, tmp_path / "g.h5")
    assert cli.main(["info", str(tmp_path / "g.h5")]) == 0
    text = capsys.readouterr().out
    assert "affine1" in text and "Affine" in text and "(3,)" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines()[1:] if line.startswith("  ")}
    assert lines["affine1"][-1] == "15"  # 12 weights + 3 biases
    assert lines["lif2"][-1] == "9"  # tau and v_threshold per neuron, scalar r, v_leak, v_reset
    assert lines["input"][-1] == "0"
    assert "total parameter values: 24" in text
    sf.to_nir(graph, tmp_path / "g.nir")
    assert cli.main(["info", str(tmp_path / "g.nir")]) == 0
    assert "affine1" in capsys.readouterr().out


def test_info_reports_bad_files_without_traceback(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "missing.h5")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    assert cli.main(["info", str(tmp_path / "junk.h5")]) == 1
    assert "junk.h5" in capsys.readouterr().err
    (tmp_path / "g.txt").write_text("x")
    assert cli.main(["info", str(tmp_path / "g.txt")]) == 1
    assert "expected .h5, .hdf5 or .nir" in capsys.readouterr().err


def test_convert_points_to_the_python_call(capsys):
    assert cli.main(["convert", "m.pt"]) == 2
    err = capsys.readouterr().err
    assert "ann_to_snn" in err and "Traceback" not in err


def test_simulate_runs_a_graph_file_and_writes_results(tmp_path, capsys):
    g = sf.Graph.sequential(
        sf.ir.Input(shape=(3,)), sf.ir.Linear(weight=np.full((2, 3), 0.6)), sf.ir.LIF(tau=0.01, v_threshold=1.0, r=10.0)
    )
    sf.save(g, tmp_path / "g.h5")
    x = np.ones((5, 1, 3))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "res.npz"
    argv = ["simulate", str(tmp_path / "g.h5"), str(tmp_path / "x.npy"), "--record", "lif2", "--out", str(out)]
    assert cli.main(argv) == 0
    expected = sf.simulate(g, x, backend="numba-event").output
    with np.load(out) as saved:
        assert np.array_equal(saved["output"], expected) and expected.sum() > 0
        assert "record/lif2" in saved and "stats/synaptic_events" in saved
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    assert cli.main(["simulate", str(tmp_path / "g.h5"), str(tmp_path / "bad.npy")]) == 1
    assert "bad.npy" in capsys.readouterr().err
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # choices come from the registry
        cli.main(["simulate", str(tmp_path / "g.h5"), str(tmp_path / "x.npy"), "--backend", "nope"])
    assert exit_info.value.code == 2 and "numba-event" in capsys.readouterr().err


def test_info_without_a_file_lists_the_registry_and_the_zoo(capsys):
    from spikeflow.backends import backend_names
    from spikeflow.models import MODELS

    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in backend_names()) and all(name in text for name in MODELS)
    assert "early exit" in text and "precisions" in text


def test_export_refusals_are_clear_errors(tmp_path, capsys):
    sf.save(sf.Graph.sequential(sf.ir.Input(shape=(2,)), sf.ir.Threshold(threshold=np.ones(2))), tmp_path / "g.h5")
    assert cli.main(["export", str(tmp_path / "g.h5"), "--target", "spinnaker2"]) == 1
    err = capsys.readouterr().err
    assert "type Threshold: not a SpiNNaker 2 node type" in err and "Traceback" not in err
    assert cli.main(["export", str(tmp_path / "g.h5"), "--target", "loihi"]) == 1
    assert "registered targets: rram-lsm, spinnaker2" in capsys.readouterr().err


def test_export_to_spinnaker2_prints_the_report(tmp_path, capsys):
    sf.save(small_graph(), tmp_path / "g.h5")
    np.save(tmp_path / "x.npy", (np.random.default_rng(0).random((10, 2, 4)) < 0.5).astype(float))
    out = tmp_path / "export"
    assert cli.main(["export", str(tmp_path / "g.h5"), "--out", str(out), "--samples", str(tmp_path / "x.npy"), "--chips", "2"]) == 0
    text = capsys.readouterr().out
    assert "SpiNNaker 2 export:" in text and "SRAM per PE: max" in text and "busiest PE" in text
    assert (out / "sram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sf.load_export(out).report.pes >= 2


def test_bench_runs_the_benchmark_driver(monkeypatch):
    calls = []
    monkeypatch.setattr(bench.subprocess, "call", lambda cmd, cwd: calls.append(cmd) or 0)
    assert cli.main(["bench"]) == 0
    assert calls and calls[0][0] == sys.executable and calls[0][1].endswith("benchmarks/run_all.py")


def test_train_saves_a_graph_and_resumes_its_checkpoint(tmp_path, capsys):
    args = ["train", "--out", str(tmp_path), "--hidden", "16", "--steps", "4", "--no-progress", "--checkpoint", str(tmp_path / "ck.h5")]
    assert cli.main(args + ["--epochs", "1"]) == 0
    first = capsys.readouterr().out
    assert "test accuracy" in first and (tmp_path / "digits_mlp.h5").is_file()
    graph = sf.load(tmp_path / "digits_mlp.h5")
    assert graph.nodes["affine1"].weight.shape == (16, 64)
    assert cli.main(args + ["--epochs", "2"]) == 0  # resumes after epoch 1
    from spikeflow.train.loop import load_state

    assert load_state(tmp_path / "ck.h5", "spikeflow-checkpoint", 2)["epoch"] == 2


def test_demo_runs_the_demo_pipeline_shipped_in_the_package(monkeypatch, tmp_path, capsys):
    """``spikeflow demo`` is ``spikeflow run`` on spikeflow/pipeline/demo.toml (package data, so an
    installed wheel has it; tests/test_packaging.py), with --out and --data as overrides."""
    import spikeflow.pipeline as pipeline

    calls = []

    def fake_run(path, **kw):
        calls.append((path, kw))
        return {"out": tmp_path, "report": tmp_path / "report" / "report.html", "seconds": {"data": 1.5, "model": 0.0},
                "cached": ["model"], "total_seconds": 1.5}

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run)
    assert cli.main(["demo", "--out", str(tmp_path), "--data", "d", "--from", "evaluate"]) == 0
    path, kw = calls[0]
    assert path == pipeline.DEMO and path.is_file() and path.parent == Path(pipeline.__file__).parent
    assert kw == {"from_stage": "evaluate", "only": None, "quiet": False,
                  "overrides": {"run": {"out": str(tmp_path)}, "data": {"root": "d"}}}
    out = capsys.readouterr().out
    assert str(pipeline.DEMO) in out and "data 1.5 s, model cached" in out and out.endswith("report.html\n")
    assert cli.main(["demo", "--quiet", "--only", "report"]) == 0
    assert calls[1][1] == {"from_stage": None, "only": "report", "quiet": True, "overrides": None}
    assert capsys.readouterr().out == f"{tmp_path / 'report' / 'report.html'}\n"


class _TinyEvents:
    """A registered-dataset stand-in: 16 recordings on a 4x3x2 sensor, class = which half fires."""

    sensor_size = (4, 3, 2)

    def __init__(self, root, train=True, transform=None):
        rng = np.random.default_rng(0 if train else 1)
        self.items = []
        for i in range(16):
            label = i % 2
            n = 40
            ev = sf.datasets.make_events(rng.integers(0, 2, n) + 2 * label, rng.integers(0, 3, n), np.sort(rng.uniform(0, 1000, n)), rng.integers(0, 2, n))
            self.items.append((ev, label))
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        ev, label = self.items[i]
        return (self.transform(ev) if self.transform else ev), label


def test_train_any_zoo_network_or_graph_file_on_a_registered_dataset(tmp_path, monkeypatch, capsys):
    import spikeflow.datasets as sd

    monkeypatch.setitem(sd.DATASETS, "tiny", "_TinyEvents")
    monkeypatch.setattr(sd, "_TinyEvents", _TinyEvents, raising=False)
    base = ["train", "--dataset", "tiny", "--root", str(tmp_path), "--bins", "3", "--epochs", "2", "--batch-size", "8",
            "--no-progress", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):  # choices come from the registries
        cli.main(base[:2] + ["nope"])
    assert cli.main(base + ["--model", "mlp"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    trained = sf.load(tmp_path / "mlp_tiny.h5")
    assert trained.nodes["affine1"].weight.shape == (128, 24)
    # a graph file trains the same way; its input must match the sensor
    sf.save(sf.models.spiking_mlp(24, 6, 2), tmp_path / "small.h5")
    assert cli.main(base + ["--graph", str(tmp_path / "small.h5")]) == 0
    assert (tmp_path / "small_tiny.h5").is_file()
    sf.save(sf.models.spiking_mlp(5, 6, 2), tmp_path / "wrong.h5")
    assert cli.main(base + ["--graph", str(tmp_path / "wrong.h5")]) == 1
    assert "(5,)" in capsys.readouterr().err
    assert cli.main(base + ["--model", "saccade-cnn"]) == 1  # sized for 34x34x2 sensors only
