"""Continual trainer: metrics, strategies, determinism, resume in a new process, pictures, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError, FormatError
from spikeflow.continual import (
    EWC, ContinualTrainer, ExactProjection, Multitask, Task, average_accuracy, backward_transfer, get_strategy,
    permuted_digits, permuted_tasks, plot_accuracy_matrix, plot_task_curves,
)
from spikeflow.continual.hlop import HLOP, principal_cosines, top_subspace
from spikeflow.models import spiking_mlp
from spikeflow.train.trainer import RateEncoder

ROOT = Path(__file__).resolve().parents[2]


def mlp_graph(n_in=256, hidden=48, n_out=10, seed=0):
    return spiking_mlp(n_in, hidden, n_out, seed)


def make_strategy(name):
    return {
        "finetune": lambda: "finetune",
        "ewc": lambda: EWC(lam=500.0),
        "exact": lambda: ExactProjection({"affine1": 24, "affine3": 8}),
        "hlop": lambda: HLOP({"affine1": 24, "affine3": 8}, lr=1.0, iterations=10, hebbian_epochs=2),
        "multitask": lambda: Multitask(),
    }[name]()


def small_run(strategy="hlop", n_tasks=3, checkpoint=None, seed=0):
    """A fast sequence: 400 digits at 16x16, a 48-neuron hidden layer, 6 steps, 2 epochs."""
    tasks = permuted_digits(n_tasks, size=16, limit=400)
    net = sf.to_torch(mlp_graph(), dtype=torch.float32)
    trainer = ContinualTrainer(net, make_strategy(strategy), optimizer="adam", lr=3e-3, epochs=2, batch_size=32,
                               seed=seed, encoder=RateEncoder(6), checkpoint=checkpoint, progress=False)
    return trainer, tasks


# --------------------------------------------------------------------------------- metrics


def test_acc_and_bwt_of_a_known_matrix():
    m = np.array([[0.9, 0.1, 0.0], [0.7, 0.8, 0.1], [0.6, 0.5, 0.95]])
    assert average_accuracy(m) == pytest.approx((0.6 + 0.5 + 0.95) / 3)
    assert backward_transfer(m) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert backward_transfer([[0.7]]) == 0.0
    with pytest.raises(DataError, match="not finished"):
        average_accuracy(np.array([[0.9, np.nan], [np.nan, np.nan]]))
    with pytest.raises(DataError, match="square"):
        backward_transfer(np.zeros((2, 3)))


def test_permuted_tasks_apply_one_fixed_permutation_per_task():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 2])
    tasks = permuted_tasks((x, y), (x[:2], y[:2]), 3, seed=1)
    np.testing.assert_array_equal(tasks[0].train[0], x)
    for t in tasks[1:]:
        perm = t.train[0][0].astype(int)  # row 0 is 0..3, so it is the permutation itself
        np.testing.assert_array_equal(t.train[0], x[:, perm])
        np.testing.assert_array_equal(t.test[0], x[:2, perm])
    assert not np.array_equal(tasks[1].train[0], tasks[2].train[0])
    digits = permuted_digits(2, size=16, limit=50)
    assert digits[0].train[0].shape == (50, 256) and digits[1].test[0].shape[1] == 256
    assert 0.0 <= digits[0].train[0].min() and digits[0].train[0].max() <= 1.0


# ------------------------------------------------------------------------------ strategies


def test_strategies_run_and_hlop_forgets_less_than_fine_tuning():
    results = {}
    for name in ("finetune", "hlop"):
        trainer, tasks = small_run(name)
        results[name] = trainer.fit(tasks)
    for r in results.values():
        assert r.matrix.shape == (3, 3) and r.finished
        assert np.diag(r.matrix).min() > 0.6  # every task is learned
    assert results["finetune"].bwt < -0.1
    assert results["hlop"].bwt > results["finetune"].bwt + 0.1
    assert results["hlop"].bwt > -0.08


def test_same_seed_gives_the_same_matrix_and_another_seed_does_not():
    a, tasks = small_run("hlop", n_tasks=2)
    b, _ = small_run("hlop", n_tasks=2)
    c, _ = small_run("hlop", n_tasks=2, seed=1)
    ra, rb, rc = a.fit(tasks), b.fit(tasks), c.fit(tasks)
    np.testing.assert_array_equal(ra.matrix, rb.matrix)
    for name in a.strategy.subspaces:
        assert torch.equal(a.strategy.subspaces[name].basis(), b.strategy.subspaces[name].basis())
    assert not np.array_equal(ra.matrix, rc.matrix)


def test_exact_projection_learns_the_svd_subspace_of_what_it_saw_in_the_last_epoch():
    trainer, tasks = small_run("exact", n_tasks=1)
    strategy = trainer.strategy
    seen = {k: [] for k in strategy.layers}
    observe = strategy.observe

    def spy(activity):
        for k, v in activity.items():
            seen[k].append(v.clone())
        observe(activity)

    strategy.observe = spy
    trainer.fit(tasks)
    n_batches = -(-len(tasks[0].train[1]) // trainer.batch_size)
    for name, sub in strategy.subspaces.items():
        assert len(seen[name]) == n_batches  # the last of the two epochs only
        ref = top_subspace(torch.cat(seen[name]), strategy._k(name))
        assert principal_cosines(sub.basis(), ref).min() > 1 - 1e-9


def test_ewc_penalty_and_multitask_data():
    trainer, tasks = small_run("ewc", n_tasks=2)
    assert trainer.strategy.penalty(trainer.model) is None
    trainer.fit(tasks, stop_after=1)
    assert float(trainer.strategy.penalty(trainer.model)) == 0.0  # at the anchor
    with torch.no_grad():
        next(trainer.model.parameters()).add_(0.1)
    assert float(trainer.strategy.penalty(trainer.model)) > 0.0
    assert Multitask().training_tasks(2) == [0, 1, 2]
    assert get_strategy("hlop").name == "hlop"
    with pytest.raises(DataError, match="unknown continual-learning strategy"):
        get_strategy("replay")
    with pytest.raises(DataError, match="missing hook"):
        get_strategy(object())


# ------------------------------------------------------------------- resume in a new process


def _run_in_subprocess(checkpoint, stop_after, out):
    code = (
        "import json, sys; sys.path.insert(0, {root!r});"
        "from tests.continual.test_trainer import small_run;"
        "trainer, tasks = small_run('hlop', n_tasks=5, checkpoint={ckpt!r});"
        "r = trainer.fit(tasks, resume=True, stop_after={stop});"
        "json.dump(r.matrix.tolist(), open({out!r}, 'w'))"
    ).format(root=str(ROOT), ckpt=str(checkpoint), stop=stop_after, out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.array(json.loads(Path(out).read_text()), dtype=np.float64)


@pytest.mark.slow
def test_interrupted_after_task_4_and_resumed_in_a_new_process_gives_the_same_matrix(tmp_path):
    ckpt = tmp_path / "hlop.h5"
    first = _run_in_subprocess(ckpt, 4, tmp_path / "a.json")
    assert np.isnan(first[4]).all() and not np.isnan(first[3]).any()
    resumed = _run_in_subprocess(ckpt, "None", tmp_path / "b.json")
    trainer, tasks = small_run("hlop", n_tasks=5)
    uninterrupted = trainer.fit(tasks).matrix
    np.testing.assert_array_equal(resumed, uninterrupted)


def test_checkpoint_round_trip_restores_subspaces_and_progress(tmp_path):
    ckpt = tmp_path / "c.h5"
    trainer, tasks = small_run("hlop", n_tasks=3, checkpoint=ckpt)
    trainer.fit(tasks, stop_after=1)
    other, _ = small_run("hlop", n_tasks=3, checkpoint=ckpt)
    other._set_tasks(tasks)
    other.load_checkpoint(ckpt)
    assert other.task_index == 1
    np.testing.assert_array_equal(other.matrix, trainer.matrix)
    for name, sub in trainer.strategy.subspaces.items():
        assert torch.equal(other.strategy.subspaces[name].basis(), sub.basis())
    for (k, a), b in zip(trainer.model.state_dict().items(), other.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_broken_or_foreign_checkpoints_are_format_errors(tmp_path):
    trainer, tasks = small_run("hlop", n_tasks=2)
    trainer._set_tasks(tasks)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match="not a readable continual-learning checkpoint"):
        trainer.load_checkpoint(junk)
    with pytest.raises(FormatError, match="no such file"):
        trainer.load_checkpoint(tmp_path / "missing.h5")
    graph_file = tmp_path / "graph.h5"
    sf.save(mlp_graph(), graph_file)
    with pytest.raises(FormatError, match="expected a 'spikeflow-continual' file"):
        trainer.load_checkpoint(graph_file)
    ewc_ckpt = tmp_path / "ewc.h5"
    ewc, _ = small_run("ewc", n_tasks=2, checkpoint=ewc_ckpt)
    ewc.fit(tasks, stop_after=1)
    with pytest.raises(FormatError, match="written by strategy 'ewc'"):
        trainer.load_checkpoint(ewc_ckpt)
    whole = ewc_ckpt.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FormatError):
        ewc.load_checkpoint(truncated)


# ---------------------------------------------------------------------------- bad input


def test_tasks_with_mismatched_input_shapes_are_a_clear_error():
    trainer, tasks = small_run("finetune", n_tasks=2)
    x, y = tasks[1].train
    bad = tasks[:1] + [Task("small", (x[:, :100], y), tasks[1].test)]
    with pytest.raises(DataError, match=r"task 1 \('small'\) train: samples have shape \(100,\), but task 0 .* has \(256,\)"):
        trainer.fit(bad)
    other = [Task(t.name, (t.train[0][:, :64], t.train[1]), (t.test[0][:, :64], t.test[1])) for t in tasks]
    with pytest.raises(DataError, match=r"encoded samples have shape \(64,\), but the model's input expects \(256,\)"):
        trainer.fit(other)
    with pytest.raises(DataError, match="integer labels"):
        trainer.fit([Task("float labels", (x, y.astype(np.float32)), tasks[1].test)])
    with pytest.raises(DataError, match="no tasks"):
        trainer.fit([])


# --------------------------------------------------------------------------------- pictures


def test_pictures_are_written_as_png(tmp_path):
    m = np.array([[0.9, 0.1, 0.0], [0.7, 0.8, 0.1], [0.6, 0.5, 0.95]])
    for path in (
        plot_accuracy_matrix(m, tmp_path / "one.png"),
        plot_accuracy_matrix({"finetune": m, "hlop": np.triu(m) + np.tril(np.full((3, 3), 0.9), -1)}, tmp_path / "two.png"),
        plot_task_curves(m, tmp_path / "curves.png", names=["a", "b", "c"]),
    ):
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(DataError, match="square"):
        plot_accuracy_matrix(np.zeros((2, 3)), tmp_path / "bad.png")
    with pytest.raises(DataError, match="2 names for 3 tasks"):
        plot_task_curves(m, tmp_path / "bad.png", names=["a", "b"])
    assert not (tmp_path / "bad.png").exists()
