"""Sweeps on a local Ray with 2 workers: every trial stored once, a killed worker's trial rerun,
finished trials never lost or rerun, resume skips stored trials, compiled kernels reused."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spikeflow.cli.main import main as cli_main
from spikeflow.errors import DataError, FormatError
from spikeflow.scale import TrialStore, pareto_mask, parse_config, run_sweep

VICTIM = 3  # the trial whose worker the test kills


def marked_objective(params, context):
    """Leaves one file per run; the victim's first run waits (until its worker is killed)."""
    marks = Path(context.options["marks"])
    i = params["i"]
    first = not list(marks.glob(f"run-{i}-*"))
    (marks / f"run-{i}-{os.getpid()}-{time.time_ns()}").write_text("")
    if i == VICTIM and first:
        (marks / "victim.pid").write_text(str(os.getpid()))
        time.sleep(120)  # never returns in the test: the worker is killed first
    return {"score": float(i * i), "cost": float(10 - i)}


def failing_objective(params, context):
    if params["i"] == 1:
        raise ValueError("bad trial")
    return {"score": float(params["i"])}


def dying_objective(params, context):
    """Trial 1 kills its own worker process every time it runs."""
    if params["i"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"score": float(params["i"]), "cost": 0.0}


def config(marks, n=8, **sweep):
    return parse_config({"sweep": {"objective": "unused:unused", "workers": 2, "objectives": {"score": "max", "cost": "min"}, **sweep},
                         "params": {"i": {"values": list(range(n))}}, "options": {"marks": str(marks)}})


def runs(marks, i):
    return len(list(Path(marks).glob(f"run-{i}-*")))


def test_killed_worker_loses_no_finished_trial_and_reruns_the_lost_one(ray_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "sweep"
    before_kill = {}

    def killer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = sorted((out / "trials").glob("*.json")) if (out / "trials").exists() else []
            if (marks / "victim.pid").exists() and len(done) >= 2:
                before_kill.update({p.name: p.read_text() for p in done})
                os.kill(int((marks / "victim.pid").read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    result = run_sweep(config(marks), out, objective=marked_objective, progress=False)
    thread.join()
    assert before_kill, "the killer never fired"
    records = result["records"]
    assert [r["trial"] for r in records] == list(range(8))
    assert all(r["status"] == "ok" for r in records)
    assert [r["metrics"]["score"] for r in records] == [float(i * i) for i in range(8)]
    # the lost trial ran twice (its second attempt recorded as such), every other trial once
    assert result["lost"] == 1
    assert runs(marks, VICTIM) == 2 and records[VICTIM]["attempts"] == 2
    assert all(runs(marks, i) == 1 for i in range(8) if i != VICTIM)
    # trials finished before the kill are on disk unchanged
    for name, text in before_kill.items():
        assert (out / "trials" / name).read_text() == text
    assert {r["worker"] for r in records} - {int((marks / "victim.pid").read_text())}
    # table and picture
    table = json.loads((out / "results.json").read_text())
    assert len(table["rows"]) == 8 and {"trial", "i", "score", "cost", "attempts"} <= set(table["columns"])
    assert (out / "results.csv").read_text().count("\n") == 9
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resuming the finished sweep runs nothing again
    again = run_sweep(config(marks), out, objective=marked_objective, progress=False)
    assert [r["trial"] for r in again["records"]] == list(range(8))
    assert sum(runs(marks, i) for i in range(8)) == 9
    # a different configuration refuses the folder
    with pytest.raises(DataError, match="different configuration"):
        run_sweep(config(marks, n=9), out, objective=marked_objective, progress=False)


def test_resume_runs_only_missing_trials_and_records_errors(ray_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "sweep"
    cfg = config(marks, n=4, objectives={"score": "max"})
    store = TrialStore(out, cfg.fingerprint())
    store.save({"trial": 2, "params": {"i": 2}, "metrics": {"score": 4.0}, "status": "ok"})
    result = run_sweep(cfg, out, objective=failing_objective, progress=False)
    status = {r["trial"]: r["status"] for r in result["records"]}
    assert status == {0: "ok", 1: "error", 2: "ok", 3: "ok"}
    assert "ValueError: bad trial" in result["records"][1]["error"]
    assert result["records"][2]["metrics"] == {"score": 4.0}  # the stored trial was not rerun
    # a damaged trial file is a clear error
    (out / "trials" / "0003.json").write_text("{not json")
    with pytest.raises(FormatError, match="0003.json"):
        TrialStore(out, cfg.fingerprint()).records()


def test_a_trial_that_always_kills_its_worker_is_recorded_as_lost(ray_cluster, tmp_path):
    result = run_sweep(config(tmp_path, n=3, max_attempts=2), tmp_path / "sweep", objective=dying_objective, progress=False)
    status = {r["trial"]: (r["status"], r["attempts"]) for r in result["records"]}
    assert status == {0: ("ok", 1), 1: ("lost", 2), 2: ("ok", 1)}
    assert result["lost"] == 2 and "worker died 2 times" in result["records"][1]["error"]


def test_cli_sweep_of_digits_snn_reuses_compiled_kernels(ray_cluster, tmp_path, capsys):
    (tmp_path / "s.toml").write_text("""
[sweep]
objective = "digits_snn"
search = "optuna"
trials = 4
workers = 2
[sweep.objectives]
accuracy = "max"
synaptic_events = "min"
[params.hidden]
values = [8, 16]
[params.lr]
low = 0.001
high = 0.01
log = true
[options]
epochs = 1
steps = 4
""")
    status = cli_main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "4/4 trials ok" in printed and "pareto" in printed
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "trials").glob("*.json"))]
    assert len(records) == 4
    for r in records:
        assert 0.0 <= r["metrics"]["accuracy"] <= 1.0 and r["metrics"]["synaptic_events"] > 0
        assert r["params"]["hidden"] in (8, 16) and 0.001 <= r["params"]["lr"] <= 0.01
    # a worker never compiles a kernel it already has; its first trial compiles the training kernels
    assert all(r["recompilations"] == 0 for r in records)
    assert any(r["trial_on_worker"] > 1 for r in records)
    firsts = [r["new_compilations"] for r in records if r["trial_on_worker"] == 1]
    assert sum(r["new_compilations"] for r in records if r["trial_on_worker"] > 1) < sum(firsts)


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.integers(0, 5, (12, 2)).astype(float)
        mask = pareto_mask(v, ["max", "min"])
        for i in range(12):
            dominated = any(v[j, 0] >= v[i, 0] and v[j, 1] <= v[i, 1] and (v[j, 0] > v[i, 0] or v[j, 1] < v[i, 1]) for j in range(12))
            assert mask[i] == (not dominated)
