"""Data-parallel training: 2 gloo workers (spawned here, on 127.0.0.1) give the weights of one
process with the same global batch, and a 2-worker checkpoint resumes exactly on 1 worker."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import spikeflow as sf
from spikeflow.continual import HLOP, ContinualTrainer, Task
from spikeflow.continual.hlop import Subspace
from spikeflow.errors import DataError
from spikeflow.models import spiking_mlp
from spikeflow.train import RateEncoder, Trainer
from spikeflow.continual.distributed import DistributedContinualTrainer
from spikeflow.train.distributed import DistributedTrainer, Workers, init_workers, shutdown_workers

N_DENSE, N_SPIKES, FEATURES, STEPS = 25, 9, 6, 5


def make_net():
    return sf.to_torch(spiking_mlp(FEATURES, 8, 3, seed=1), dtype=torch.float64)


def dense_data():
    rng = np.random.default_rng(0)
    return rng.random((N_DENSE, FEATURES)), rng.integers(0, 3, N_DENSE)


class SpikeDataset(torch.utils.data.Dataset):
    """Samples ``([T, F] spikes, label)``, loaded one by one (the worker loads only its shard)."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.x = torch.as_tensor((rng.random((N_SPIKES, STEPS, FEATURES)) < 0.4).astype(np.float64))
        self.y = torch.as_tensor(rng.integers(0, 3, N_SPIKES))

    def __len__(self):
        return N_SPIKES

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def trainers(make, checkpoint, epochs, **kwargs):
    dense = make(make_net(), epochs=epochs, batch_size=10, lr=0.02, seed=3, encoder=RateEncoder(STEPS), progress=False,
                 checkpoint=checkpoint, **kwargs)
    # batches of 4, 4 and 1 samples: with 2 workers the last shard of one worker is empty
    spikes = make(make_net(), epochs=epochs, batch_size=4, lr=0.02, seed=4, optimizer="sgd", progress=False, **kwargs)
    return dense, spikes


def tasks():
    rng = np.random.default_rng(2)
    out = []
    for i in range(2):
        x, y = rng.random((9, FEATURES)), rng.integers(0, 3, 9)
        out.append(Task(f"t{i}", (x, y), (x, y)))
    return out


def continual(make, checkpoint=None, **kwargs):
    # batches of 4, 4 and 1: one worker's last shard is empty, yet it joins the activity gather
    return make(make_net(), strategy=HLOP(subspace=2, hebbian_epochs=1), epochs=2, batch_size=4, lr=0.05, seed=6,
                encoder=RateEncoder(STEPS), progress=False, checkpoint=checkpoint, **kwargs)


def continual_state(trainer):
    subspaces = {f"hlop/{k}": sub.frozen for k, sub in trainer.strategy.subspaces.items()}
    return {**{f"model/{k}": v for k, v in trainer.model.state_dict().items()}, **subspaces,
            "matrix": torch.as_tensor(trainer.matrix)}


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    workers = init_workers("gloo", timeout_s=120)
    dense, spikes = trainers(DistributedTrainer, os.path.join(out, "two.ckpt"), 2, workers=workers)
    dense.fit(dense_data())
    spikes.fit(SpikeDataset())
    # HLOP's subspace learns from the gathered activity: the same update on every worker
    rng = np.random.default_rng(5)
    activity = torch.as_tensor(rng.random((7, 6)))
    sub = Subspace(6, lr=0.5, iterations=3)
    sub.add(2, torch.Generator().manual_seed(0))
    sub.update(workers.gather_rows(activity[workers.shard(7)]))
    hlop = continual(DistributedContinualTrainer, workers=workers)
    hlop.fit(tasks())
    continual(DistributedContinualTrainer, os.path.join(out, "hlop.h5"), workers=workers).fit(tasks(), stop_after=1)
    states = {"continual": continual_state(hlop), "dense": dense.model.state_dict(), "spikes": spikes.model.state_dict(), "hlop": sub.new,
              "history": torch.tensor(dense.history["loss"] + spikes.history["loss"])}
    torch.save(states, os.path.join(out, f"rank{rank}.pt"))
    shutdown_workers()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
    return {r: torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in (0, 1)} | {"dir": out}


def test_two_workers_equal_one_process_with_the_same_global_batch(two_workers):
    dense, spikes = trainers(Trainer, None, 2)
    dense.fit(dense_data())
    spikes.fit(SpikeDataset())
    for rank in (0, 1):
        got = two_workers[rank]
        for key, one in (("dense", dense), ("spikes", spikes)):
            for name, value in one.model.state_dict().items():
                assert torch.allclose(got[key][name], value, rtol=0, atol=1e-12), (rank, key, name)
        assert torch.allclose(got["history"], torch.tensor(dense.history["loss"] + spikes.history["loss"]), atol=1e-12)
    # both workers hold bit-identical weights (same summed gradients, same steps)
    for name, value in two_workers[0]["dense"].items():
        assert torch.equal(value, two_workers[1]["dense"][name])


def test_hlop_subspace_update_on_gathered_activity_is_the_single_process_update(two_workers):
    rng = np.random.default_rng(5)
    activity = torch.as_tensor(rng.random((7, 6)))
    sub = Subspace(6, lr=0.5, iterations=3)
    sub.add(2, torch.Generator().manual_seed(0))
    sub.update(activity)
    for rank in (0, 1):
        assert torch.allclose(two_workers[rank]["hlop"], sub.new, atol=1e-12)


def test_hlop_continual_on_two_workers_equals_one_process_and_resumes_on_one(two_workers):
    one = continual(ContinualTrainer)
    one.fit(tasks())
    expected = continual_state(one)
    assert any(k.startswith("hlop/") and v.shape[0] == 4 for k, v in expected.items())  # 2 tasks x 2 neurons
    for rank in (0, 1):
        got = two_workers[rank]["continual"]
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert torch.allclose(got[key], value, rtol=0, atol=1e-10), (rank, key)
    # the first task trained on 2 workers, the second resumed on 1
    resumed = continual(DistributedContinualTrainer, os.path.join(two_workers["dir"], "hlop.h5"), workers=Workers())
    resumed.fit(tasks(), resume=True)
    for key, value in expected.items():
        assert torch.allclose(continual_state(resumed)[key], value, rtol=0, atol=1e-10), key


def test_resume_on_one_worker_from_a_two_worker_checkpoint(two_workers, tmp_path):
    checkpoint = os.path.join(two_workers["dir"], "two.ckpt")
    resumed, _ = trainers(DistributedTrainer, checkpoint, 3, workers=Workers())
    resumed.fit(dense_data(), resume=True)
    assert resumed.epoch == 3 and len(resumed.history["loss"]) == 3
    straight, _ = trainers(Trainer, None, 3)
    straight.fit(dense_data())
    for name, value in straight.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], value, rtol=0, atol=1e-12), name
    assert np.allclose(resumed.history["loss"], straight.history["loss"], atol=1e-12)


def test_shards_cover_a_batch_in_order():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [Workers(rank, world).shard(n) for rank in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            sizes = [len(range(n)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_world_and_refused_inputs():
    assert init_workers() == Workers()  # no torchrun environment: a world of one
    trainer = DistributedTrainer(make_net(), epochs=1, progress=False, workers=Workers())
    loader = torch.utils.data.DataLoader(SpikeDataset(), batch_size=4)
    with pytest.raises(DataError, match="not a DataLoader"):
        trainer.fit(loader)


@pytest.mark.slow
def test_torchrun_spikeflow_train_on_two_workers(tmp_path):
    # `torchrun` is `python -m torch.distributed.run`; calling it through this interpreter keeps this environment
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "spikeflow", "train", "--epochs", "1", "--hidden", "8",
           "--steps", "4", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "run.ckpt"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("on 2 workers") == 1  # only the main worker reports
    assert (tmp_path / "digits_mlp.h5").is_file() and (tmp_path / "run.ckpt").is_file()
    sf.load(tmp_path / "digits_mlp.h5").validate()
