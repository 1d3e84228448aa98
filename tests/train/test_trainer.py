import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import spikeflow as sf
from spikeflow.errors import DataError, FormatError
from spikeflow.train import RateEncoder, SpikeCountL2, Trainer
from spikeflow.train.loop import load_state, save_state
from tests.train.tiny_net import TinySNN, toy_data


def make_trainer(init_seed=0, dropout=0.2, **kwargs):
    torch.manual_seed(init_seed)
    options = dict(loss="membrane_max_ce", lr=1e-2, epochs=4, batch_size=16, seed=3, progress=False)
    options.update(kwargs)
    return Trainer(TinySNN(dropout=dropout), **options)


def params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def same_history(a, b):
    """Histories equal exactly (NaN where no validation data counts as equal)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_gives_identical_weights_and_history():
    data, val = toy_data(), toy_data(n=30, seed=1)
    t1, t2 = make_trainer(), make_trainer()
    h1, h2 = t1.fit(data, val), t2.fit(data, val)
    assert same_history(h1, h2)
    assert_same(params(t1), params(t2))
    t3 = make_trainer(seed=4)
    t3.fit(data, val)
    assert t3.history["loss"] != h1["loss"]


def test_fit_learns_and_evaluate_agrees_with_predict():
    x, y = toy_data(n=120)
    t = make_trainer(dropout=0.0, epochs=8)
    hist = t.fit((x, y))
    assert len(hist["loss"]) == 8 and hist["loss"][-1] < hist["loss"][0]
    assert np.isnan(hist["val_acc"]).all()
    res = t.evaluate((x, y))
    pred = t.predict(x)
    assert res["acc"] > 0.8
    assert res["acc"] == pytest.approx((pred == y).float().mean().item())
    assert t.predict((x, y), scores=True).shape == (120, 3)


def test_caller_rng_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_trainer(epochs=1).fit(toy_data(n=32))
    # the model was built before the seed; fit itself must not consume the caller's stream
    torch.manual_seed(123)
    t = make_trainer(epochs=1)
    torch.manual_seed(123)
    t.fit(toy_data(n=32))
    assert torch.equal(torch.rand(3), expected)


def test_dataset_form_equals_array_form():
    x, y = toy_data()
    a, b = make_trainer(), make_trainer()
    a.fit((x, y))
    b.fit(TensorDataset(x, y))
    assert same_history(a.history, b.history)
    assert_same(params(a), params(b))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    assert b.evaluate(loader)["acc"] == pytest.approx(a.evaluate((x.numpy(), y.numpy()))["acc"])


@pytest.mark.parametrize("with_val", [False, True])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, with_val):
    data, val = toy_data(), (toy_data(n=30, seed=1) if with_val else None)
    full = make_trainer(epochs=5)
    full.fit(data, val)

    ckpt = tmp_path / "run.h5"
    make_trainer(epochs=2, checkpoint=ckpt).fit(data, val)  # "interrupted" after epoch 2
    resumed = make_trainer(init_seed=99, epochs=5, checkpoint=ckpt)  # different init: all must come from the file
    resumed.fit(data, val, resume=True)
    assert same_history(resumed.history, full.history)
    assert_same(params(resumed), params(full))
    assert resumed.epoch == 5


def test_on_epoch_sees_each_epoch_as_it_ends_after_its_checkpoint(tmp_path):
    data, val = toy_data(), toy_data(n=30, seed=1)
    ckpt = tmp_path / "run.h5"
    calls = []

    def on_epoch(epoch, values):  # the checkpoint of this epoch is on disk; the next epoch has not run
        calls.append((epoch, values, load_state(ckpt, "spikeflow-checkpoint", 2)["epoch"], len(trainer.history["loss"])))

    trainer = make_trainer(epochs=3, checkpoint=ckpt)
    history = trainer.fit(data, val, on_epoch=on_epoch)
    assert [c[0] for c in calls] == [c[2] for c in calls] == [c[3] for c in calls] == [1, 2, 3]
    assert [c[1] for c in calls] == [{k: history[k][e] for k in history} for e in range(3)]
    plain = make_trainer(epochs=3)
    assert same_history(plain.fit(data, val), history)  # the callback changes nothing


def test_checkpoint_is_hdf5_and_complete(tmp_path):
    t = make_trainer(epochs=1, checkpoint=tmp_path / "c.h5")
    t.fit(toy_data(n=32))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f.attrs["format"] == "spikeflow-checkpoint" and f.attrs["format_version"] == 2
    state = load_state(tmp_path / "c.h5", "spikeflow-checkpoint", 2)
    assert state["epoch"] == 1 and set(state) >= {"model", "optimizer", "history", "rng"}
    assert isinstance(next(iter(state["optimizer"]["state"])), int)  # integer keys survive
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary left behind


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_carrying_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "spikeflow-checkpoint", "version": 1, "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(FormatError, match="no spikeflow checksum"):
        make_trainer().load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(FormatError):
        make_trainer().load_checkpoint(plain)
    assert not marker.exists()


def test_bad_checkpoints_raise_format_error(tmp_path):
    t = make_trainer(epochs=1, checkpoint=tmp_path / "c.h5")
    t.fit(toy_data(n=32))
    with pytest.raises(FormatError, match="no such file"):
        t.load_checkpoint(tmp_path / "missing.h5")
    raw = (tmp_path / "c.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="cut.h5"):
        t.load_checkpoint(tmp_path / "cut.h5")
    sf.save(sf.Graph.sequential(sf.ir.Input(shape=(2,)), sf.ir.LIF(tau=0.01, v_threshold=np.ones(2))), tmp_path / "graph.h5")
    with pytest.raises(FormatError, match="spikeflow-checkpoint"):
        t.load_checkpoint(tmp_path / "graph.h5")
    torch.manual_seed(0)
    other = Trainer(TinySNN(n_hidden=5), progress=False)
    with pytest.raises(FormatError, match="does not fit"):
        other.load_checkpoint(tmp_path / "c.h5")
    state = load_state(tmp_path / "c.h5", "spikeflow-checkpoint", 2)
    save_state(tmp_path / "new.h5", "spikeflow-checkpoint", 99, state)
    with pytest.raises(FormatError, match="newer"):
        t.load_checkpoint(tmp_path / "new.h5")
    del state["rng"]
    save_state(tmp_path / "partial.h5", "spikeflow-checkpoint", 2, state)
    with pytest.raises(FormatError, match="missing field 'rng'"):
        t.load_checkpoint(tmp_path / "partial.h5")


def test_state_files_round_trip_nested_values(tmp_path):
    state = {"a": (1, 2.5, None, True), 3: {"t": torch.arange(4), "n": np.eye(2)}, "s": ["x", [1, 2]]}
    save_state(tmp_path / "s.h5", "test-state", 1, state)
    back = load_state(tmp_path / "s.h5", "test-state", 1)
    assert back["a"] == (1, 2.5, None, True) and back["s"] == ["x", [1, 2]]
    assert torch.equal(back[3]["t"], torch.arange(4)) and np.array_equal(back[3]["n"], np.eye(2))
    with pytest.raises(FormatError, match="cannot store"):
        save_state(tmp_path / "bad.h5", "test-state", 1, {"f": lambda: 0})


def _snapshot(t):
    return {k: v.clone() for k, v in t.model.state_dict().items()}, repr(t.optimizer.state_dict()), t.epoch, dict(t.history), t._torch_rng.clone()


@pytest.mark.parametrize("damage", ["history", "optimizer", "epoch"])
def test_failed_checkpoint_load_leaves_the_trainer_untouched(tmp_path, damage):
    # Issue 17: a checkpoint that failed half-way left the model restored but not the optimizer.
    donor = make_trainer(epochs=2, checkpoint=tmp_path / "c.h5")
    donor.fit(toy_data(n=32))
    state = load_state(tmp_path / "c.h5", "spikeflow-checkpoint", 2)
    if damage == "history":
        state["history"] = {"loss": ["not a number"]}
    elif damage == "optimizer":
        state["optimizer"]["param_groups"] = []
    else:
        state["epoch"] = "two"
    save_state(tmp_path / "bad.h5", "spikeflow-checkpoint", 2, state)
    t = make_trainer(epochs=1)
    t.fit(toy_data(n=32))
    before = _snapshot(t)
    with pytest.raises(FormatError, match="does not fit"):
        t.load_checkpoint(tmp_path / "bad.h5")
    after = _snapshot(t)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:4] == after[1:4] and torch.equal(before[4], after[4])


def test_damaged_checkpoint_is_refused_before_parsing(tmp_path):
    t = make_trainer(epochs=1, checkpoint=tmp_path / "c.h5")
    t.fit(toy_data(n=32))
    raw = bytearray((tmp_path / "c.h5").read_bytes())
    raw[len(raw) // 2] ^= 1
    (tmp_path / "c.h5").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="checksum mismatch"):
        t.load_checkpoint(tmp_path / "c.h5")


def test_regularizer_reads_recorded_activity_and_lowers_it():
    x, y = toy_data()
    plain = make_trainer(dropout=0.0, epochs=3)
    plain.fit((x, y))
    reg = make_trainer(dropout=0.0, epochs=3, regularizers=[SpikeCountL2("lif", weight=0.05)])
    reg.fit((x, y))
    with torch.no_grad():
        count = lambda t: t.model.run(x.transpose(0, 1), record=("lif",))[1]["lif"].sum().item()
        assert count(reg) < count(plain)


def test_regularizers_need_a_model_with_run():
    with pytest.raises(DataError, match="run"):
        Trainer(torch.nn.Linear(2, 2), regularizers=[SpikeCountL2("h")], progress=False)


def test_encoder_draws_fresh_seeded_spikes():
    g = torch.Generator().manual_seed(0)
    dense = torch.rand(96, 8, generator=g)
    y = (dense[:, :3].sum(1) > dense[:, 3:6].sum(1)).long()
    a = make_trainer(encoder=RateEncoder(steps=6), epochs=2)
    b = make_trainer(encoder=RateEncoder(steps=6), epochs=2)
    assert same_history(a.fit((dense, y)), b.fit((dense, y)))
    assert a.evaluate((dense, y)) == a.evaluate((dense, y))  # evaluation spikes repeat


def test_rate_encoder_follows_its_generator():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    a = RateEncoder(steps=4000)(x, torch.Generator().manual_seed(0))
    b = RateEncoder(steps=4000)(x, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    enc = RateEncoder(steps=4000)
    first, second = enc(x, g), enc(x, g)
    assert torch.equal(a, b) and torch.equal(a, first) and not torch.equal(first, second)
    assert a.shape == (4000, 1, 3) and a.dtype == torch.float32
    rates = a.mean(0)[0]
    assert rates[0] == 0 and rates[2] == 1 and abs(rates[1].item() - 0.25) < 0.03
    with pytest.raises(DataError, match="NaN"):
        RateEncoder(steps=3)(torch.tensor([[float("nan")]]), g)


def test_bad_data_is_reported():
    x, y = toy_data(n=10)
    t = make_trainer(epochs=1)
    with pytest.raises(DataError, match="labels"):
        t.fit((x, y[:5]))
    with pytest.raises(DataError, match="integer class labels"):
        t.fit((x, y.float()))
    with pytest.raises(DataError, match="expected"):
        t.fit("not data")
    with pytest.raises(DataError, match="with labels"):
        t.fit(DataLoader(x, batch_size=4))  # batches of x only
    with pytest.raises(DataError, match="with labels"):
        t.fit(x)
    with pytest.raises(DataError, match="unknown optimizer"):
        make_trainer(optimizer="rmsprop-ish")


def test_progress_is_a_bar_on_terminals_and_one_line_per_epoch_in_logs(capsys, monkeypatch):
    data = toy_data(n=32)
    make_trainer(epochs=1).fit(data)
    shown = capsys.readouterr()
    assert shown.err == "" and shown.out == ""
    make_trainer(epochs=3, progress=True).fit(data)  # captured output is a log, as in CI
    shown = capsys.readouterr()
    assert shown.err == ""  # no bar redraws
    lines = shown.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"] and "loss" in lines[0]
    monkeypatch.setattr("spikeflow._progress.interactive", lambda: True)
    make_trainer(epochs=1, progress=True).fit(data, data)
    shown = capsys.readouterr()
    assert "train: epoch 1/1" in shown.err and "val acc" in shown.out


def test_trains_a_lowered_graph_with_recorded_regularizer():
    import spikeflow as sf

    rng = np.random.default_rng(0)
    graph = sf.Graph.sequential(
        sf.ir.Input(shape=(8,)),
        sf.ir.Affine(weight=rng.uniform(-0.35, 0.35, (16, 8)), bias=np.zeros(16)),
        sf.ir.LIF(tau=np.full(16, 5e-3), v_threshold=np.ones(16), r=np.full(16, 5.0)),
        sf.ir.Affine(weight=rng.uniform(-0.25, 0.25, (3, 16)), bias=np.zeros(3)),
        sf.ir.LI(tau=np.full(3, 1e-2), r=np.full(3, 10.0)),
        dt=1e-3,
    )
    x, y = toy_data(n=64)
    t = Trainer(graph, loss="membrane_max_ce", lr=1e-2, epochs=4, batch_size=16, progress=False,
                regularizers=[SpikeCountL2("lif2", weight=1e-4)])
    before = graph.nodes["affine1"].weight.copy()
    hist = t.fit((x, y))
    assert hist["loss"][-1] < hist["loss"][0]
    trained = sf.to_graph(t.model)
    assert not np.allclose(trained.nodes["affine1"].weight, before)
