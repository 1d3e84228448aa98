"""The recipes of the pretrained models are pipeline files that ``spikeflow run`` runs: each is run
here on a small slice of its data with a short budget (the full settings retrain the shipped files;
docs/models.md), through every stage it names, and the pipeline's own checks accept each file."""

import re
from pathlib import Path

import pytest

from spikeflow.models import PRETRAINED
from spikeflow.models.pretrained import recipe_path
from spikeflow.pipeline import PipelineError, load_pipeline, run_pipeline

# (table, key) -> value written over the recipe's (or added to the table): small data, short training
SMALL = {
    "digits-mlp": {("data", "train_limit"): 200, ("data", "test_limit"): 60, ("train", "epochs"): 1, ("evaluate", "samples"): 20},
    "egru-char-lm": {("data", "train_limit"): 8000, ("data", "test_limit"): 1000, ("train", "epochs"): 1, ("evaluate", "samples"): 4},
    "converted-exit": {("data", "train_limit"): 200, ("data", "test_limit"): 40, ("train", "epochs"): 2,
                       ("evaluate", "samples"): 20, ("early_exit", "samples"): 20},
    "saccade-cnn": {("data", "train_limit"): 100, ("data", "test_limit"): 20, ("train", "epochs"): 1, ("evaluate", "samples"): 10},
}


def override(text: str, values: dict) -> str:
    """``text`` with ``key = value`` set in each named table (replaced where present, else added)."""
    out, table, done = [], None, set()

    def flush():
        for (t, k), v in values.items():
            if t == table and (t, k) not in done:
                out.append(f"{k} = {v!r}".replace("'", '"'))
                done.add((t, k))

    for line in text.splitlines():
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            flush()
            table = header.group(1)
        key = re.match(r"^(\w+)\s*=", line)
        if key and (table, key.group(1)) in values:
            out.append(f"{key.group(1)} = {values[(table, key.group(1))]!r}".replace("'", '"'))
            done.add((table, key.group(1)))
            continue
        out.append(line)
    flush()
    return "\n".join(out) + "\n"


def small_recipe(name: str, tmp_path: Path) -> Path:
    text = override(recipe_path(name).read_text(), SMALL[name])
    text = override(text, {("run", "out"): str(tmp_path / "out"), ("data", "root"): str(tmp_path / "data")})
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_the_pipeline_accepts_every_recipe(name):
    pipeline = load_pipeline(recipe_path(name), check_resources=True)
    assert pipeline.name == name


def test_override_replaces_and_adds_keys_per_table():
    text = "[a]\nx = 1\n[b]\nx = 2\n"
    assert override(text, {("b", "x"): 5, ("a", "y"): "s"}) == '[a]\nx = 1\ny = "s"\n[b]\nx = 5\n'


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-mlp", "egru-char-lm", "converted-exit"])
def test_a_recipe_runs_through_spikeflow_run(name, tmp_path):
    result = run_pipeline(small_recipe(name, tmp_path), quiet=True)
    stages = load_pipeline(small_recipe(name, tmp_path)).config
    assert {"data", "model", "evaluate"} <= set(result["executed"])
    assert Path(result["report"]).is_file()
    backends = result["results"]["evaluate"]["backends"]
    assert set(backends) == set(stages["evaluate"]["backends"])
    # rate-coded digits, characters, one averaged frame at every step (converted): a step is no
    # window of real time, so the report's axes count steps
    assert result["results"]["evaluate"]["record"]["dt"] is None
    if name == "egru-char-lm":  # the same logits on every backend: the same bits per character
        bpc = [b["bits_per_char"] for b in backends.values()]
        assert max(bpc) - min(bpc) < 1e-9 and 0 < bpc[0] < 8
    else:
        assert all(0 <= b["accuracy"] <= 1 for b in backends.values())
    if name == "converted-exit":
        assert result["results"]["model"]["source"] == "convert:qcfs-mlp" and "early_exit" in result["executed"]


def test_next_char_needs_a_text_dataset(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(override(recipe_path("saccade-cnn").read_text(), {("train", "task"): "next-char"}))
    with pytest.raises(PipelineError, match=r"\[train\] task: task 'next-char' and a text dataset"):
        load_pipeline(path)


def test_an_unknown_ann_to_convert_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(override(recipe_path("converted-exit").read_text(), {("model", "convert"): "resnet"}))
    with pytest.raises(PipelineError, match=r"\[model\] convert: unknown ANN 'resnet'"):
        load_pipeline(path)


def test_a_pipeline_evaluates_the_shipped_char_lm_to_its_stored_figure(tmp_path):
    """``[model] pretrained = "egru-char-lm"`` without training: the pipeline's next-char evaluation
    of the shipped file on this interpreter's test text gives the stored bits per character (when
    that text is the shipped one; Python releases may change the reference manual)."""
    from spikeflow.datasets.text import pydoc_topics_text, split_text
    from spikeflow.models import pretrained_info
    from spikeflow.models.retrain import shipped_test_text

    path = tmp_path / "lm.toml"
    path.write_text(f'[run]\nout = "{tmp_path / "out"}"\n[data]\ndataset = "pydoc-topics"\n[model]\npretrained = "egru-char-lm"\n'
                    '[evaluate]\nbackends = ["torch", "numba-event"]\nsamples = 16\n[report]\nenabled = false\n')
    result = run_pipeline(path, quiet=True)
    assert result["executed"] == ["data", "model", "evaluate"]
    stored = pretrained_info("egru-char-lm")["metrics"]
    for backend in result["results"]["evaluate"]["backends"].values():
        if split_text(pydoc_topics_text())["test"] == shipped_test_text():
            assert backend["bits_per_char"] == pytest.approx(stored["bits_per_char"], rel=1e-9)
            assert backend["accuracy"] == stored["accuracy"]
        else:
            assert abs(backend["bits_per_char"] - stored["bits_per_char"]) < 0.5


def test_fresh_spikes_train_as_the_demo_does_and_differ_from_spikes_drawn_once(tmp_path):
    """``[train] fresh_spikes``: the train stage codes the digits afresh every epoch with the
    trainer's seeded generator, which is what ``spikeflow.workflows.train_digits`` (the reference) does:
    the same weights to the bit. Without it, the spikes drawn once by the data stage train another
    network."""
    import numpy as np

    from spikeflow.workflows import train_digits
    from spikeflow.pipeline import stage_graph

    path = tmp_path / "digits-mlp.toml"
    path.write_text(override(recipe_path("digits-mlp").read_text(), {("train", "epochs"): 1, ("run", "out"): str(tmp_path / "run")}))
    fresh = stage_graph(run_pipeline(path, until="train", quiet=True), "train")
    reference = train_digits(tmp_path / "demo", epochs=1, progress=False)["graph"]
    once = stage_graph(run_pipeline(path, until="train", quiet=True, overrides={"train": {"fresh_spikes": False}}), "train")
    for name, node in reference.nodes.items():
        if hasattr(node, "weight"):
            np.testing.assert_array_equal(fresh.nodes[name].weight, node.weight)
            assert not np.array_equal(once.nodes[name].weight, node.weight)


def test_fresh_spikes_need_a_rate_coded_dataset(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(recipe_path("saccade-cnn").read_text().replace("[train]\n", "[train]\nfresh_spikes = true\n"))
    with pytest.raises(PipelineError, match=r"\[train\] fresh_spikes: needs a rate-coded dataset \['sklearn-digits'\]"):
        load_pipeline(path)
    path.write_text(recipe_path("digits-mlp").read_text().replace('zoo = "digits-mlp"', 'convert = "qcfs-mlp"'))
    with pytest.raises(PipelineError, match=r"\[train\] fresh_spikes: an ANN to convert trains on values"):
        load_pipeline(path)
