"""The shipped pretrained models: each file's stored test figures are reproduced from the file on
its fixed evaluation data; the files are small, indexed, sealed, and listed by ``spikeflow models``.

Accuracies are counts of correct samples (exact); bits per character are sums of float64 log
probabilities, reproduced to 1e-9 relative (BLAS summation order is the only freedom left).
"""

import doctest
import importlib
import json
import shutil

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.cli.main import main
from spikeflow.errors import FormatError, GraphError, SpikeflowError
from spikeflow.models import PRETRAINED, pretrained, pretrained_info, pretrained_names
from spikeflow.models import ann as ann_module
from spikeflow.models import charlm
from spikeflow.models.pretrained import PRETRAINED_DIR, pretrained_index, recipe_path
from spikeflow.models.retrain import char_lm_metrics, evaluate, shipped_test_text

# the module, not the function of the same name that spikeflow.models exports
pretrained_module = importlib.import_module("spikeflow.models.pretrained")
BPC_RTOL = 1e-9
@pytest.fixture(scope="module")
def saccade_root(tmp_path_factory):
    """One DigitSaccades cache for the module (generated deterministically, ~15 s)."""
    return tmp_path_factory.mktemp("digit_saccades")


def check_reproduced(name, graph, measured):
    stored = graph.metadata["pretrained"]["metrics"]
    assert measured["data_sha256"] == stored["data_sha256"], f"{name}: the evaluation data changed, not the model"
    assert (measured["correct"], measured["n"]) == (stored["correct"], stored["n"])
    assert measured["accuracy"] == stored["accuracy"] == pretrained_info(name)["metrics"]["accuracy"]
    return stored


def test_digits_mlp_accuracy_is_reproduced():
    graph = pretrained("digits-mlp")
    stored = check_reproduced("digits-mlp", graph, evaluate("digits-mlp", graph))
    assert stored["accuracy"] > 0.9


@pytest.mark.slow  # generates the DigitSaccades test split (~15 s) once for the module
def test_saccade_cnn_accuracy_is_reproduced(saccade_root):
    graph = pretrained("saccade-cnn")
    stored = check_reproduced("saccade-cnn", graph, evaluate("saccade-cnn", graph, saccade_root))
    assert stored["accuracy"] > 0.9


@pytest.mark.slow
def test_converted_exit_accuracy_and_latency_are_reproduced(saccade_root):
    graph = pretrained("converted-exit")
    policy = sf.exit.get_exit_policy(graph)  # the calibrated exit travels in the file
    assert graph.metadata["conversion"]["method"] == "qcfs" and policy.threshold > 0
    measured = evaluate("converted-exit", graph, saccade_root)
    stored = check_reproduced("converted-exit", graph, measured)
    assert measured["mean_steps"] == stored["mean_steps"] < stored["full_steps"]
    assert measured["accuracy_full_steps"] == stored["accuracy_full_steps"]
    assert stored["accuracy"] > 0.85


def test_char_lm_bits_per_char_are_reproduced():
    graph = pretrained("egru-char-lm")
    assert any(isinstance(node, sf.ir.EGRU) for node in graph.nodes.values())
    measured = evaluate("egru-char-lm", graph)
    stored = check_reproduced("egru-char-lm", graph, measured)
    assert measured["bits_per_char"] == pytest.approx(stored["bits_per_char"], rel=BPC_RTOL)
    assert measured["bits_per_char"] == pytest.approx(pretrained_info("egru-char-lm")["metrics"]["bits_per_char"], rel=BPC_RTOL)
    assert stored["bits_per_char"] < 3.5  # far below a uniform guess over the vocabulary (log2 of ~100 = 6.7)


def test_char_lm_runs_the_same_on_numba_event():
    """The shipped char-LM on the event-driven simulator gives the torch logits (float64)."""
    import torch

    from spikeflow.datasets.text import encode_text

    graph = pretrained("egru-char-lm")
    ids = encode_text(shipped_test_text()[:200], graph.metadata["vocabulary"])
    x = np.eye(len(graph.metadata["vocabulary"]))[ids][:, None]
    got = sf.simulate(graph, x, backend="numba-event").output
    with torch.no_grad():
        want = sf.to_torch(graph, dtype=torch.float64)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_char_lm_metrics_match_a_loop_by_loop_count():
    """Bits per character against an obvious per-character sum of -log2 softmax."""
    import torch

    graph = pretrained("egru-char-lm")
    text = shipped_test_text()[:301]
    m = char_lm_metrics(graph, text, streams=1)
    ids = [graph.metadata["vocabulary"].index(ch) for ch in text]
    x = torch.from_numpy(np.eye(len(graph.metadata["vocabulary"]))[ids[:-1]][:, None])
    with torch.no_grad():
        logits = sf.to_torch(graph, dtype=torch.float64)(x)[:, 0].numpy()
    bits, hits = 0.0, 0
    for t, target in enumerate(ids[1:]):
        row = logits[t] - logits[t].max()
        bits -= (row[target] - np.log(np.exp(row).sum())) / np.log(2)
        hits += int(np.argmax(logits[t]) == target)
    assert m["n"] == 300 and m["correct"] == hits
    assert m["bits_per_char"] == pytest.approx(bits / 300, rel=1e-12)


def test_files_are_small_indexed_and_carry_their_figures():
    index = pretrained_index()
    assert sorted(index) == pretrained_names() == sorted(PRETRAINED)
    total = 0
    for name in pretrained_names():
        path = PRETRAINED_DIR / f"{name}.h5"
        size = path.stat().st_size
        total += size
        assert size < 1024 * 1024 and index[name]["bytes"] == size
        stamp = pretrained(name).metadata["pretrained"]
        assert stamp["name"] == name and stamp["metrics"] == index[name]["metrics"] and stamp["task"] == index[name]["task"]
        assert stamp["recipe"] == index[name]["recipe"] == f"spikeflow/models/recipes/{name}.toml"
    assert total < 3 * 1024 * 1024


def test_unknown_name_names_the_known_ones():
    with pytest.raises(GraphError) as err:
        pretrained("resnet-50")
    assert all(name in str(err.value) for name in PRETRAINED)


def test_a_damaged_file_is_refused_by_its_seal(tmp_path, monkeypatch):
    shutil.copy(PRETRAINED_DIR / "digits-mlp.h5", tmp_path / "digits-mlp.h5")
    data = bytearray((tmp_path / "digits-mlp.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "digits-mlp.h5").write_bytes(bytes(data))
    monkeypatch.setattr(pretrained_module, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FormatError, match="checksum mismatch"):
        pretrained("digits-mlp")


def test_a_file_holding_another_model_or_none_is_refused(tmp_path, monkeypatch):
    shutil.copy(PRETRAINED_DIR / "digits-mlp.h5", tmp_path / "saccade-cnn.h5")
    monkeypatch.setattr(pretrained_module, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FormatError, match="holds 'digits-mlp'"):
        pretrained("saccade-cnn")
    with pytest.raises(FormatError, match="not installed"):
        pretrained("digits-mlp")


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not a readable"),
    ('{"format": "other", "version": 1, "models": {}}', "expected format"),
    ('{"format": "spikeflow-pretrained-index", "version": 1, "models": []}', "'models'"),
    ('{"format": "spikeflow-pretrained-index", "version": 1, "models": {"m": {"task": 3}}}', "model 'm' key 'task'"),
])
def test_a_broken_index_raises_a_clear_error(tmp_path, text, needle):
    path = tmp_path / "index.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=needle):
        pretrained_index(path)


def test_an_index_entry_with_a_wrong_value_type_names_model_and_key(tmp_path):
    data = json.loads((PRETRAINED_DIR / "index.json").read_text())
    data["models"]["digits-mlp"]["bytes"] = "big"
    (tmp_path / "index.json").write_text(json.dumps(data))
    with pytest.raises(SpikeflowError, match="'digits-mlp' key 'bytes'"):
        pretrained_index(tmp_path / "index.json")


def test_models_command_lists_task_figures_size_and_recipe(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    index = pretrained_index()
    for name in PRETRAINED:
        line = next(line for line in out.splitlines() if line.strip().startswith(name))
        assert index[name]["task"] in line and f"spikeflow/models/recipes/{name}.toml" in line and "KiB" in line
        assert f"{100 * index[name]['metrics']['accuracy']:.2f}%" in line
    assert f"{index['egru-char-lm']['metrics']['bits_per_char']:.3f} bits/char" in out


def test_models_command_reports_an_unknown_model_to_retrain(capsys):
    assert main(["models", "--retrain", "nope"]) == 1
    assert "unknown pretrained model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("module", [pretrained_module, charlm, ann_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


@pytest.mark.slow
def test_retrain_writes_a_measured_file_and_leaves_the_shipped_one(tmp_path, capsys):
    """``spikeflow models --retrain digits-mlp --out DIR``: the recipe's settings, a new sealed file
    whose metadata holds its measured figures (retrain reloads and re-measures it itself)."""
    shipped = (PRETRAINED_DIR / "digits-mlp.h5").read_bytes()
    index = (PRETRAINED_DIR / "index.json").read_text()
    assert main(["models", "--retrain", "digits-mlp", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "digits-mlp: test accuracy" in capsys.readouterr().out
    graph = sf.load(tmp_path / "digits-mlp.h5")
    stamp = graph.metadata["pretrained"]
    assert stamp["name"] == "digits-mlp" and stamp["metrics"] == evaluate("digits-mlp", graph)
    assert stamp["metrics"]["accuracy"] > 0.9 and len(stamp["history"]["train"]["val_acc"]) == 15  # the recipe's 15 epochs
    assert (PRETRAINED_DIR / "digits-mlp.h5").read_bytes() == shipped and (PRETRAINED_DIR / "index.json").read_text() == index


def test_retrain_runs_the_recipe_through_the_pipeline_stages(tmp_path, monkeypatch):
    """One route: ``retrain`` runs the recipe with ``spikeflow.pipeline.run_pipeline`` up to its
    train stage (no evaluate, no report), and the file it writes holds exactly the weights the
    train stage cached, measured by ``evaluate``. A small recipe (200 digits, 1 epoch) keeps it fast."""
    from spikeflow.models import retrain as retrain_module
    from spikeflow.pipeline import run_pipeline, stage_graph

    small = tmp_path / "digits-mlp.toml"
    text = recipe_path("digits-mlp").read_text().replace("epochs = 15", "epochs = 1")
    small.write_text(text.replace("batch_size = 32", "batch_size = 32\ntrain_limit = 200"))
    monkeypatch.setattr(retrain_module, "recipe_path", lambda name: small)
    entry = retrain_module.retrain("digits-mlp", out_dir=tmp_path / "models", progress=False, run_dir=tmp_path / "run")
    cache = tmp_path / "run" / "cache"
    assert sorted(p.name for p in cache.iterdir()) == ["data", "model", "train"]
    graph = sf.load(tmp_path / "models" / "digits-mlp.h5")
    again = run_pipeline(small, until="train", quiet=True, overrides={"run": {"out": str(tmp_path / "run")}})
    assert again["executed"] == []  # the same run folder and cache: nothing retrained
    trained = stage_graph(again, "train")
    for name, node in trained.nodes.items():
        if hasattr(node, "weight"):
            np.testing.assert_array_equal(graph.nodes[name].weight, node.weight)
    stamp = graph.metadata["pretrained"]
    assert stamp["metrics"] == entry["metrics"] == evaluate("digits-mlp", graph)
    assert len(stamp["history"]["train"]["loss"]) == 1 and stamp["metrics"]["n"] == 360


def test_broken_recipe_and_missing_evaluation_inputs_raise_clear_errors(tmp_path, monkeypatch):
    from spikeflow.models import retrain

    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nbins = 8\n")
    with pytest.raises(FormatError, match="bad.toml: not a readable recipe"):
        retrain.read_recipe(bad)
    with pytest.raises(FormatError, match="not a readable recipe"):
        retrain.read_recipe(tmp_path / "missing.toml")
    monkeypatch.setattr(retrain, "TEXT_PATH", tmp_path / "gone.txt")
    with pytest.raises(FormatError, match="test text is missing"):
        retrain.shipped_test_text()
    graph = pretrained("egru-char-lm")
    del graph.metadata["vocabulary"]
    with pytest.raises(FormatError, match="metadata 'vocabulary'"):
        char_lm_metrics(graph, "abc", 1)
    graph = pretrained("egru-char-lm")
    with pytest.raises(SpikeflowError, match="not in the vocabulary"):
        char_lm_metrics(graph, "abc\u2603def", 1)
