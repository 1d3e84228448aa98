"""``spikeflow run``: the schema check (key and line, before any work), the stage cache (a rerun does
no stage work; a change reruns only what it touches; corrupt entries are recomputed, never
unpickled), ``--from`` / ``--only``, the logs, and the run dict."""

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.cli.main import main
from spikeflow.pipeline import PipelineError, load_pipeline, run_pipeline
from spikeflow.pipeline.cache import Entry, file_digest
from spikeflow.pipeline.schema import line_of

ROOT = Path(__file__).resolve().parent.parent


def tiny(tmp_path, *, data_root, export_percentile=100.0, report=False, model='zoo = "mlp"', extra="") -> Path:
    """A pipeline of every stage on a few DigitSaccades digits (seconds of work)."""
    text = f"""
    [run]
    name = "tiny"
    out = "{tmp_path / 'run'}"

    [data]
    dataset = "digit-saccades"
    root = "{data_root}"
    bins = 4
    batch_size = 16
    train_limit = 40
    test_limit = 12
    val_fraction = 0.25

    [model]
    {model}
    [model.options]
    hidden = 16

    [train]
    epochs = 1
    lr = 0.002

    [evaluate]
    backends = ["torch", "numba-event"]
    samples = 8
    record = ["lif2"]

    [early_exit]
    backend = "numba-event"
    samples = 10

    [[export]]
    target = "spinnaker2"
    samples = 4
    [export.options]
    percentile = {export_percentile}
    silent = "warn"

    [[export]]
    target = "rram-lsm"
    robustness = false
    [export.options]
    device = "ideal"

    [report]
    enabled = {str(report).lower()}
    {extra}
    """
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def first(tmp_path_factory, data_root):
    """The tiny pipeline run once (shared by the cache tests; each copies what it changes)."""
    folder = tmp_path_factory.mktemp("pipe")
    path = tiny(folder, data_root=data_root)
    return path, run_pipeline(path, quiet=True)


def test_first_run_runs_every_stage_and_fills_the_results(first):
    path, result = first
    assert result["executed"] == ["data", "model", "train", "evaluate", "early_exit", "export"]
    assert result["cached"] == []
    r = result["results"]
    assert r["data"]["n_train"] == 30 and r["data"]["n_val"] == 10 and r["data"]["n_test"] == 12
    assert r["data"]["sensor_size"] == [34, 34, 2]
    assert r["model"]["source"] == "zoo:mlp"
    assert len(r["train"]["history"]["loss"]) == 1
    assert set(r["evaluate"]["backends"]) == {"torch", "numba-event"}
    for b in r["evaluate"]["backends"].values():
        assert 0 <= b["accuracy"] <= 1 and b["samples"] == 8 and b["seconds_per_sample"] > 0
    chosen = r["early_exit"]["chosen"]
    assert 1 <= chosen["mean_steps"] <= r["early_exit"]["full_steps"] == 4
    targets = [e["path"] for e in r["export"]]
    assert all(sf.load_export(p).report is not None for p in targets)
    rows = r["export"][0]["robustness"]["rows"]
    assert [row["case"] for row in rows] == ["float64 graph (numba-event)", "spinnaker2 executor (fixed point)"]
    assert "robustness" not in r["export"][1]
    summary = json.loads((result["out"] / "run.json").read_text())
    assert summary["executed"] == result["executed"]


def test_per_layer_synaptic_events_add_up_to_the_event_simulators_count(first):
    """The per-layer counts (spikes x fan-out) against numba-event's own count of the same run."""
    r = first[1]["results"]["evaluate"]
    total = sum(layer["synaptic_events"] for layer in r["layers"].values())
    assert total == pytest.approx(r["backends"]["numba-event"]["synaptic_events"], rel=1e-9)


def test_the_time_axes_use_the_datas_bin_width_not_the_models_dt(first):
    """DigitSaccades bins its fixed 315 ms recordings into 4 frames: the recorded activity's step is
    a frame's duration; the zoo MLP's dt (1 ms) means nothing physical here."""
    from spikeflow.datasets import DigitSaccades
    from spikeflow.pipeline.run import stage_graph

    r = first[1]["results"]
    assert r["data"]["step_us"] == DigitSaccades.duration_us / 4
    assert r["evaluate"]["record"]["dt"] == pytest.approx(DigitSaccades.duration_us / 4 * 1e-6)
    assert stage_graph(first[1], "train").dt == 1e-3


def test_a_step_has_a_real_duration_only_where_the_data_bins_a_fixed_length():
    from spikeflow.datasets import DigitSaccades
    from spikeflow.pipeline.data import step_us

    class EachRecordingItsOwnSpan:  # a tonic set: ToFrame(n_time_bins) splits every recording's own span
        sensor_size = (34, 34, 2)

    assert step_us(DigitSaccades.__new__(DigitSaccades), 8) == DigitSaccades.duration_us / 8
    assert step_us(EachRecordingItsOwnSpan(), 8) is None


def test_a_rerun_does_no_stage_work(first):
    path, _ = first
    again = run_pipeline(path, quiet=True)
    assert again["executed"] == []
    assert again["cached"] == ["data", "model", "train", "evaluate", "early_exit", "export"]
    assert all(s == 0.0 for s in again["seconds"].values())


def test_a_cached_rerun_loads_neither_torch_nor_the_data(first):
    """What keeps a rerun cheap: only the file checks run (no torch import, no frames read)."""
    import subprocess
    import sys

    code = ("import sys; from spikeflow.pipeline import run_pipeline; r = run_pipeline(sys.argv[1], quiet=True); "
            "print(r['executed'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(first[0])], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["[]", "False"], out.stdout + out.stderr


def test_changing_only_export_options_reruns_only_the_export(first, tmp_path, data_root):
    path, result = first
    changed = tiny(path.parent, data_root=data_root, export_percentile=99.0)
    again = run_pipeline(changed, quiet=True)
    assert again["executed"] == ["export"]
    assert again["results"]["export"][0]["path"] != result["results"]["export"][0]["path"]
    assert again["results"]["export"][1]["path"] == result["results"]["export"][1]["path"]  # rram options unchanged
    run_pipeline(tiny(path.parent, data_root=data_root), quiet=True)  # leave the shared run as it was


def test_from_and_only(first):
    path, _ = first
    assert run_pipeline(path, from_stage="early_exit", quiet=True)["executed"] == ["early_exit", "export"]
    only = run_pipeline(path, only="evaluate", quiet=True)
    assert only["executed"] == ["evaluate"] and "export" not in only["results"]


def test_the_cli_reruns_and_ends_with_the_result_path(first, capsys):
    path, result = first
    assert main(["run", str(path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(result["out"] / "run.json")  # report disabled: the run summary
    assert main(["run", str(path), "--from", "export"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "[export] running (spinnaker2)" in out and "[evaluate] cached" in out
    assert out[-1] == str(result["out"] / "run.json")


def test_until_stops_after_a_stage_and_hands_over_its_graph(first):
    """``until``: the stages after it do not run; ``stage_graph`` reads the graph a stage stored
    (the trained weights, not the model stage's initial ones)."""
    from spikeflow.pipeline import stage_graph

    path, result = first
    upto = run_pipeline(path, until="train", quiet=True)
    assert upto["executed"] == [] and upto["cached"] == ["data", "model", "train"]
    assert set(upto["folders"]) == {"data", "model", "train"} and "evaluate" not in upto["results"]
    trained, initial = stage_graph(upto, "train"), stage_graph(upto, "model")
    assert trained.nodes.keys() == initial.nodes.keys()
    layer = next(k for k, v in initial.nodes.items() if hasattr(v, "weight"))
    assert not np.array_equal(trained.nodes[layer].weight, initial.nodes[layer].weight)
    with pytest.raises(PipelineError, match="stored no graph"):
        stage_graph(upto, "evaluate")
    with pytest.raises(PipelineError, match="until: unknown stage 'train2'"):
        run_pipeline(path, until="train2", quiet=True)
    with pytest.raises(PipelineError, match="at most one of --only and until"):
        run_pipeline(path, until="train", only="model", quiet=True)


def test_overrides_replace_file_values_and_are_checked(first, tmp_path):
    path, result = first
    moved = load_pipeline(path, overrides={"run": {"out": str(tmp_path / "elsewhere")}, "train": {"epochs": 2}})
    assert moved.out == tmp_path / "elsewhere" and moved.config["train"]["epochs"] == 2
    assert moved.config["train"]["lr"] == load_pipeline(path).config["train"]["lr"]  # the rest is the file's
    with pytest.raises(PipelineError, match=r"\[train\] epochs"):
        load_pipeline(path, overrides={"train": {"epochs": "two"}})
    with pytest.raises(PipelineError, match=r"cannot override \[export\]"):
        load_pipeline(path, overrides={"export": {"target": "x"}})


def test_only_without_cached_inputs_fails(tmp_path, data_root):
    path = tiny(tmp_path, data_root=data_root)
    with pytest.raises(PipelineError, match="run the stages before it"):
        run_pipeline(path, only="evaluate", quiet=True)


def test_a_corrupt_or_foreign_cache_entry_is_recomputed(first):
    path, result = first
    trained = Path(result["out"]) / "cache" / "train"
    (folder,) = trained.iterdir()
    graph = folder / "graph.h5"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")  # damaged bytes: the hash no longer matches
    again = run_pipeline(path, quiet=True)
    assert again["executed"] == ["train"]  # retrained to the same weights: nothing after it changed
    entry = folder / "entry.json"
    meta = json.loads(entry.read_text())
    entry.write_text(json.dumps({**meta, "stage": "model"}))  # an entry of another stage
    assert run_pipeline(path, quiet=True)["executed"] == ["train"]
    entry.write_text("not json")
    assert run_pipeline(path, quiet=True)["executed"] == ["train"]


def test_the_cache_holds_no_pickles(first):
    out = Path(first[1]["out"]) / "cache"
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert {".pkl", ".pickle", ".pt"}.isdisjoint(suffixes)
    for npz in out.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as data:  # raises on an object array
            assert all(data[k].dtype != object for k in data.files)


def test_a_changed_graph_file_invalidates_the_model_stage(tmp_path, data_root):
    net = tmp_path / "net.h5"
    sf.save(sf.models.build("mlp", n_in=34 * 34 * 2, hidden=16, seed=0), net)
    path = tiny(tmp_path, data_root=data_root, model=f'graph = "{net}"')
    path.write_text(path.read_text().replace("[model.options]\nhidden = 16\n", "").replace("[train]\nepochs = 1", "[train]\nepochs = 0"))
    assert "model" in run_pipeline(path, quiet=True)["executed"]
    assert run_pipeline(path, quiet=True)["executed"] == []
    sf.save(sf.models.build("mlp", n_in=34 * 34 * 2, hidden=16, seed=1), net)  # same name, other weights
    assert run_pipeline(path, quiet=True)["executed"][:2] == ["model", "train"]


def test_a_changed_pretrained_file_invalidates_the_model_stage(tmp_path, data_root, monkeypatch):
    """The model stage's key follows the content of the file a pretrained name resolves to (here a
    copy of the zoo in a temporary folder), not the name and the spikeflow version."""
    import importlib
    import shutil

    zoo_module = importlib.import_module("spikeflow.models.pretrained")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(zoo_module.PRETRAINED_DIR / "saccade-cnn.h5", zoo)
    monkeypatch.setattr(zoo_module, "PRETRAINED_DIR", zoo)
    path = tiny(tmp_path, data_root=data_root, model='pretrained = "saccade-cnn"')
    text = path.read_text().replace("[model.options]\nhidden = 16\n", "").replace("bins = 4", "bins = 8")
    path.write_text(text.replace('record = ["lif2"]', 'record = ["lif1"]').split("[[export]]")[0])
    assert run_pipeline(path, quiet=True, until="model")["executed"] == ["data", "model"]
    assert run_pipeline(path, quiet=True, until="model")["executed"] == []
    graph = sf.models.pretrained("saccade-cnn")
    graph.nodes["fc"].weight = graph.nodes["fc"].weight * 0.5  # a retrained file: same name, other weights
    sf.save(graph, zoo / "saccade-cnn.h5")
    again = run_pipeline(path, quiet=True, until="model")
    assert again["executed"] == ["model"]
    assert np.array_equal(sf.load(Path(again["folders"]["model"]) / "graph.h5").nodes["fc"].weight, graph.nodes["fc"].weight)


def test_metrics_go_to_csv_jsonl_and_tensorboard(first):
    logs = Path(first[1]["out"]) / "logs"
    rows = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    names = {(r["stage"], r["name"]) for r in rows}
    assert ("train", "loss") in names and ("evaluate", "numba-event/accuracy") in names
    assert ("early_exit", "mean_steps") in names and ("export", "spinnaker2/spinnaker2 executor (fixed point)") in names
    head = (logs / "metrics.csv").read_text().splitlines()[0]
    assert head == "time,stage,step,name,value"
    assert any(p.name.startswith("events.out.tfevents") for p in (logs / "tensorboard").iterdir())


def test_training_metrics_reach_the_logs_as_each_epoch_ends(tmp_path, data_root, monkeypatch):
    """Each epoch's row is in metrics.csv and metrics.jsonl before the next epoch starts (read from
    inside the training loop), and the final rows are one per metric and epoch, as the history."""
    from spikeflow.train.loop import TrainingLoop

    logs = tmp_path / "run" / "logs"

    def train_rows(name):
        if not (logs / name).exists():
            return []
        if name.endswith(".jsonl"):
            rows = [json.loads(line) for line in (logs / name).read_text().splitlines()]
        else:
            import csv

            rows = list(csv.DictReader((logs / name).read_text().splitlines()))
        return [(int(r["step"]), r["name"], float(r["value"])) for r in rows if r["stage"] == "train"]

    seen = []
    epoch = TrainingLoop.epoch

    def logged_epoch(self, *args, **kwargs):  # what a user tailing the logs sees as an epoch starts
        seen.append((train_rows("metrics.jsonl"), train_rows("metrics.csv")))
        return epoch(self, *args, **kwargs)

    monkeypatch.setattr(TrainingLoop, "epoch", logged_epoch)
    path = tiny(tmp_path, data_root=data_root)
    path.write_text(path.read_text().replace("[train]\nepochs = 1", "[train]\nepochs = 3"))
    history = run_pipeline(path, quiet=True, until="train")["results"]["train"]["history"]
    names = ["loss", "train_acc", "val_loss", "val_acc"]
    expected = [(epoch + 1, k, history[k][epoch]) for epoch in range(3) for k in names]
    assert len(seen) == 3
    for done, (jsonl, csv_rows) in enumerate(seen):
        assert jsonl == csv_rows == expected[: 4 * done]
    assert train_rows("metrics.jsonl") == train_rows("metrics.csv") == expected
    assert (logs / "metrics.csv").read_text().count("time,stage,step,name,value") == 1


def test_the_run_dict_follows_the_contract(first, tmp_path):
    """What write_report receives (PIPELINE.md): arrays, graphs and plain values."""
    from spikeflow.pipeline.run import Context, _keys
    from spikeflow.pipeline.run import _run_stage

    path, _ = first
    ctx = Context(load_pipeline(path), progress=False)
    ctx.keys = _keys(ctx)
    for stage in ("data", "model", "train", "evaluate", "early_exit", "export"):
        _run_stage(ctx, stage, force=False, allow_compute=False)
    run = ctx.run_dict()
    assert run["name"] == "tiny" and "[data]" in run["pipeline"]
    assert run["cached"] == ["data", "model", "train", "evaluate", "early_exit", "export"]
    assert run["data"]["sensor_size"] == (34, 34, 2) and len(run["data"]["examples"]) == 4
    events, label = run["data"]["examples"][0]
    assert events.dtype.names == ("x", "y", "t", "p") and isinstance(label, int)
    assert isinstance(run["model"]["graph"], sf.Graph)
    rec = run["evaluate"]["record"]
    assert rec["spikes"]["lif2"].shape == rec["v"]["lif2"].shape == (4, 16)
    assert set(np.unique(rec["spikes"]["lif2"])) <= {0.0, 1.0}
    assert set(run["exports"]) == {"spinnaker2", "rram-lsm"}
    assert set(run["early_exit"]["curve"]) >= {"threshold", "accuracy", "mean_steps"}
    from spikeflow.report import write_report

    page = write_report(run, tmp_path / "report", strict=True)  # strict: any malformed part raises
    html = page.read_text()
    assert "did not run in this pipeline" not in html and "could not be drawn" not in html


# ------------------------------------------------------------------------- bad files


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
[data]
dataset = "digit-saccades"
root = "{root}"
bins = 4

[model]
zoo = "mlp"

[[export]]
target = "spinnaker2"
"""


@pytest.mark.parametrize("change,key,line", [
    (("bins = 4", "bins = 4\nbinz = 3"), r"\[data\] binz: unknown key", 5),
    (("bins = 4", 'bins = "four"'), r"\[data\] bins: expected an integer, got a string", 4),
    (("bins = 4", "bins = 0"), r"\[data\] bins: must be >= 1", 4),
    (("bins = 4", "bins = true"), r"\[data\] bins: expected an integer, got a boolean", 4),
    (('zoo = "mlp"', 'zoo = "nope"'), r"\[model\] zoo: unknown zoo model 'nope'", 7),
    (('zoo = "mlp"', 'zoo = "mlp"\ngraph = "x.h5"'), r"\[model\] graph: give exactly one model source", 8),
    (('target = "spinnaker2"', 'target = "loihi"'), r"\[\[export\]\] #1 target: unknown target 'loihi'", 10),
    (('target = "spinnaker2"', 'target = "spinnaker2"\n[export.options]\nwarp = 9'),
     r"\[\[export\]\] #1 options: unknown option 'warp'", 11),
    (('target = "spinnaker2"', 'target = "spinnaker2"\n[export.options]\nchip = {cores = 3}'),
     r"\[\[export\]\] #1 options: target 'spinnaker2' refuses them: .*unknown field 'cores'", 11),
    (('target = "spinnaker2"', 'target = "rram-lsm"\n[export.options]\nadc_bits = 8\ntile_cols = "wide"'),
     r"\[\[export\]\] #1 options: target 'rram-lsm' refuses them", 11),
    (('target = "spinnaker2"', 'target = "rram-lsm"\n[export.options]\nflux = 1'),
     r"\[\[export\]\] #1 options: target 'rram-lsm' refuses them: unknown crossbar options \['flux'\]", 11),
    (("[model]", "[modle]"), r"\[modle\]: unknown table", 6),
    (('zoo = "mlp"', 'zoo = "mlp"\n[train]\nstrategy = "tbptt"'), r"\[train\] tbptt: strategy 'tbptt' needs", 8),  # absent key: the table's line
    (('zoo = "mlp"', 'zoo = "mlp"\n[train]\nstrategy = "lean"\nmax_rate = 0.1'), r"\[train\] max_rate: the rate bound", 10),
    (('zoo = "mlp"', 'zoo = "mlp"\n[train]\ntask = "regress"'), r"\[train\] task: must be one of \['classify', 'next-char'\]", 9),
    (('zoo = "mlp"', 'zoo = "mlp"\n[train]\ntask = "next-char"'), r"\[train\] task: task 'next-char' and a text dataset", 9),
    (('dataset = "digit-saccades"', 'dataset = "nmnist"'), r"\[data\] root: .* does not exist", 3),
])
def test_bad_files_fail_before_any_work_naming_key_and_line(tmp_path, change, key, line):
    root = tmp_path / "missing" if "nmnist" in change[1] else tmp_path
    text = GOOD.format(root=root).replace(*change)
    path = write(tmp_path, text)
    with pytest.raises(PipelineError, match=key) as err:
        run_pipeline(path, quiet=True)
    assert f"bad.toml:{line}:" in str(err.value)
    assert not (Path("out") / "bad").exists() and not (tmp_path / "out").exists()  # no run folder: no work done


def test_an_export_the_model_cannot_take_fails_before_training(tmp_path, data_root):
    """A CNN whose kernels need more RRAM tiles than the chip has (``max_tiles``): refused after the
    (cheap) model stage, before the train stage runs."""
    path = tiny(tmp_path, data_root=data_root, model='zoo = "saccade-cnn"')
    path.write_text(path.read_text().replace("hidden = 16", "channels = [2, 2]").replace('device = "ideal"', 'device = "ideal"\nmax_tiles = 2'))
    with pytest.raises(PipelineError, match=r"\[\[export\]\] #2 target: target 'rram-lsm' cannot take this model: .*needs 3 tiles"):
        run_pipeline(path, quiet=True)
    assert not (tmp_path / "run" / "cache" / "train").exists()


def test_a_cnn_exports_to_the_rram_target(tmp_path, data_root):
    """The shipped DigitSaccades CNN (no training) through export to rram-lsm: convolutions as
    kernel matrices read per position; the robustness rows run the crossbar; with an ideal device
    the executor equals numba fixed point on the exported graph."""
    path = tiny(tmp_path, data_root=data_root, model='pretrained = "saccade-cnn"')
    text = path.read_text().replace("[model.options]\nhidden = 16\n", "").replace("[train]\nepochs = 1\nlr = 0.002\n", "")
    text = text.replace("bins = 4", "bins = 8").replace('record = ["lif2"]', 'record = ["lif1"]')
    rram = text[text.index('[[export]]\ntarget = "rram-lsm"'):].replace("robustness = false", "robustness = true")
    path.write_text(text.split("[early_exit]")[0] + rram)
    result = run_pipeline(path, quiet=True)
    assert result["executed"] == ["data", "model", "evaluate", "export"]
    (export,) = result["results"]["export"]
    assert export["report"]["tiles"] == 3 and export["report"]["adc_conversions_per_step"] == 8 * 17 * 17 + 16 * 8 * 8 + 10
    rows = {row["case"]: row["accuracy"] for row in export["robustness"]["rows"]}
    assert rows["float64 graph (numba-event)"] >= 0.5 and rows["programmed chip, 1 s"] >= 0.5
    prog = sf.load_export(export["path"])
    x = np.random.default_rng(0).poisson(0.5, (8, 2, 2, 34, 34)).astype(float)
    got, want = prog.run(x, record=["lif1"]), sf.simulate(prog.graph, x, precision=prog.precision, record=["lif1"])
    np.testing.assert_array_equal(got.spikes["lif1"], want.spikes["lif1"])
    np.testing.assert_array_equal(got.output, want.output)


def test_a_pretrained_model_without_training_and_the_report(tmp_path, data_root):
    """The shipped DigitSaccades CNN, evaluated and reported without a [train] table."""
    path = tiny(tmp_path, data_root=data_root, model='pretrained = "saccade-cnn"', report=True)
    text = path.read_text().replace("[model.options]\nhidden = 16\n", "").replace("[train]\nepochs = 1\nlr = 0.002\n", "")
    text = text.replace("bins = 4", "bins = 8").replace('record = ["lif2"]', 'record = ["lif1"]')
    path.write_text(text.split("[[export]]")[0] + "[report]\nenabled = true\n")
    result = run_pipeline(path, quiet=True)
    assert result["executed"] == ["data", "model", "evaluate", "early_exit", "report"]
    assert result["results"]["model"]["source"] == "pretrained:saccade-cnn"
    assert result["results"]["evaluate"]["backends"]["numba-event"]["accuracy"] >= 0.75
    page = Path(result["report"])
    assert "The train stage did not run" in page.read_text() and "could not be drawn" not in page.read_text()
    assert page.name == "report.html" and page.parent == tmp_path / "run" / "report"
    again = run_pipeline(path, quiet=True)
    assert again["executed"] == [] and again["report"] == result["report"]
    page.write_text("edited")  # a report that is gone or changed is written again
    assert run_pipeline(path, quiet=True)["executed"] == ["report"]


@pytest.mark.parametrize("strategy", ['strategy = "lean"\nchunk = 2', 'strategy = "tbptt"\ntbptt = 2', 'strategy = "online"'])
def test_long_sequence_strategies_train(tmp_path, data_root, strategy):
    path = tiny(tmp_path, data_root=data_root)
    text = path.read_text().replace("lr = 0.002", f"lr = 0.002\n{strategy}")
    path.write_text(text.split("[evaluate]")[0] + "[report]\nenabled = false\n")
    result = run_pipeline(path, quiet=True)
    assert result["executed"] == ["data", "model", "train"]
    history = result["results"]["train"]["history"]
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert result["results"]["train"]["strategy"] == {"lean": "bptt", "tbptt": "tbptt", "online": "ottt"}[strategy.split('"')[1]]


def test_an_ann_to_convert(tmp_path, data_root):
    """[model] convert: the QCFS ANN trained on time-averaged frames, converted to IF neurons; its
    SNN (rate code: the output summed over time) agrees with the ANN on most test samples, and it
    exports to both targets (the half-threshold pulse as initial membranes), whose executors equal
    numba fixed point on the exported graph (rram-lsm: an ideal device)."""
    path = tiny(tmp_path, data_root=data_root, model='convert = "qcfs-mlp"')
    text = path.read_text().replace("hidden = 16", "hidden = 32\nlevels = 4\npool = 1").replace("epochs = 1", "epochs = 20")
    text = text.replace("bins = 4", "bins = 8").replace('record = ["lif2"]', "record = []").replace("robustness = false", "")
    path.write_text(text.split("[report]", 1)[0] + "[report]\nenabled = false\n")
    result = run_pipeline(path, quiet=True)
    r = result["results"]
    assert result["executed"] == ["data", "model", "train", "evaluate", "early_exit", "export"]
    assert r["model"]["source"] == "convert:qcfs-mlp" and r["train"]["strategy"] == "ann (converted)"
    assert len(r["train"]["history"]["loss"]) == 20 and r["train"]["history"]["loss"][-1] < r["train"]["history"]["loss"][0]
    acc = {b: v["accuracy"] for b, v in r["evaluate"]["backends"].items()}
    assert acc["torch"] == acc["numba-event"] >= 0.5  # 8 test digits, 30 training digits
    s2, rram = r["export"]
    rows = {row["case"]: row["accuracy"] for row in s2["robustness"]["rows"]}
    assert rows["float64 graph (numba-event)"] >= 0.5 and rows["spinnaker2 executor (fixed point)"] >= 0.5
    assert [row["case"] for row in rram["robustness"]["rows"]][1:] == ["programmed chip, 1 s", "after 1 day of drift", "after 1 year of drift"]
    for export in (s2, rram):
        prog = sf.load_export(export["path"])
        x = np.random.default_rng(0).random((8, 2, *prog.graph.nodes["input"].shape))
        ifs = sorted(k for k in prog.graph.nodes if k.startswith("if"))
        got = prog.run(x, record=ifs)
        want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=ifs)
        np.testing.assert_array_equal(got.output, want.output)
        for k in ifs:
            np.testing.assert_array_equal(got.spikes[k], want.spikes[k])
    assert not any(p.startswith("vinit") for p in sf.load_export(s2["path"]).pops)  # the pulse occupies no PE


def test_not_toml_and_missing_tables(tmp_path):
    with pytest.raises(PipelineError, match="not valid TOML"):
        run_pipeline(write(tmp_path, "[data\n"), quiet=True)
    with pytest.raises(PipelineError, match=r"\[model\]: the \[model\] table is required"):
        run_pipeline(write(tmp_path, '[data]\ndataset = "digit-saccades"\n'), quiet=True)
    with pytest.raises(PipelineError, match="no such file|cannot read"):
        run_pipeline(tmp_path / "absent.toml", quiet=True)


def test_the_cli_prints_a_clear_error(tmp_path, capsys):
    path = write(tmp_path, GOOD.format(root=tmp_path).replace("bins = 4", "bins = -1"))
    assert main(["run", str(path)]) == 1
    assert re.search(r"spikeflow run: error: .*bad.toml:4: \[data\] bins: must be >= 1, got -1", capsys.readouterr().err)


def test_line_of_finds_keys_in_tables_and_arrays_of_tables():
    text = '[data]\nbins = 3\n\n[[export]]\ntarget = "a"\n[export.options]\nx = 1\n\n[[export]]\ntarget = "b"\n'
    assert line_of(text, "data", "bins") == 2
    assert line_of(text, "export", "target", 0) == 5
    assert line_of(text, "export", "options", 0) == 6
    assert line_of(text, "export", "target", 1) == 10
    assert line_of(text, "export", "missing", 1) == 9  # absent key: the table's header
    assert line_of(text, "nope") is None


def test_the_demo_pipeline_checks(monkeypatch):
    """The demo pipeline (spikeflow/pipeline/demo.toml, `spikeflow demo`) is a valid file with every
    stage and both hardware targets."""
    from spikeflow.pipeline import DEMO

    monkeypatch.chdir(ROOT)
    p = load_pipeline(DEMO)
    assert {"data", "model", "train", "evaluate", "early_exit", "export", "report"} <= set(p.config)
    assert {e["target"] for e in p.config["export"]} == set(sf.backends.target_names())
    assert set(p.config["evaluate"]["backends"]) >= {"torch", "numba-event"}


def test_cache_entries_check_every_file(tmp_path):
    entry = Entry(tmp_path, "data", "k" * 64)
    entry.path("a.npz").parent.mkdir(parents=True)
    entry.path("a.npz").write_bytes(b"abc")
    entry.commit({"n": 1}, ["a.npz"])
    assert Entry(tmp_path, "data", "k" * 64).load() == {"n": 1}
    assert Entry(tmp_path, "data", "k" * 63 + "j").load() is None  # another key in the folder: removed
    assert not entry.folder.exists()
    entry.path("a.npz").parent.mkdir(parents=True)
    entry.path("a.npz").write_bytes(b"abc")
    entry.commit({"n": 1}, ["a.npz"])
    entry.path("a.npz").write_bytes(b"abd")
    assert Entry(tmp_path, "data", "k" * 64).load() is None and not entry.folder.exists()
    assert file_digest(tmp_path) == file_digest(tmp_path)


def test_spoken_digits_run_through_the_pipeline(tmp_path):
    """The second generated set: spoken digits (espeak-ng + cochlea) on a 1-D sensor, 64 channels."""
    path = tiny(tmp_path, data_root=tmp_path / "spoken")
    text = path.read_text().replace('dataset = "digit-saccades"', 'dataset = "spoken-digits"').replace("bins = 4", "bins = 10")
    path.write_text(text.split("[[export]]")[0] + "[report]\nenabled = false\n")
    result = run_pipeline(path, quiet=True)
    assert result["executed"] == ["data", "model", "train", "evaluate", "early_exit"]
    data = result["results"]["data"]
    assert data["dataset"] == "spoken-digits" and tuple(data["sensor_size"]) == (64, 1, 1)
    assert data["n_train"] + data["n_val"] == 40 and data["n_test"] == 12
    backends = result["results"]["evaluate"]["backends"]
    assert abs(backends["torch"]["accuracy"] - backends["numba-event"]["accuracy"]) <= 1 / 12  # float32 vs float64: one sample at most
