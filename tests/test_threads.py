"""One place sets the thread layer, wait policy and counts (spikeflow/_threads.py)."""

import os
import subprocess
import sys
from types import SimpleNamespace

import spikeflow._threads as threads


def run(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER_PRIORITY")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**environment, **env}, check=True)


def test_importing_spikeflow_makes_idle_openmp_threads_sleep_and_picks_numbas_layer():
    code = (
        "import os, numpy as np, spikeflow as sf, numba\n"
        "from spikeflow.torch import scan_kernels\n"
        "g = sf.Graph.sequential(sf.ir.Linear(weight=np.ones((2, 3))), sf.ir.LIF(tau=0.01, v_threshold=0.5))\n"
        "import torch; net = sf.to_torch(g); net(torch.ones(4, 2, 3))\n"  # the fused scan: a parallel numba kernel
        "print(os.environ['OMP_WAIT_POLICY'], numba.threading_layer())\n"
    )
    assert run(code, NUMBA_NUM_THREADS="2").stdout.split() == ["PASSIVE", "omp"]


def test_a_users_own_settings_are_kept():
    code = "import os, spikeflow; print(os.environ['OMP_WAIT_POLICY'], os.environ['NUMBA_THREADING_LAYER_PRIORITY'])"
    out = run(code, OMP_WAIT_POLICY="ACTIVE", NUMBA_THREADING_LAYER_PRIORITY="workqueue omp tbb").stdout.split()
    assert out == ["ACTIVE", "workqueue", "omp", "tbb"]


def test_set_threads_gives_torch_and_numba_the_same_count():
    import numba
    import torch

    import spikeflow as sf

    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        assert sf.set_threads(1) == 1
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        n = sf.set_threads(10_000)  # numba's pool cannot grow past the size it started with
        assert torch.get_num_threads() == n and numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_the_first_compile_is_announced_once(tmp_path, capsys, monkeypatch):
    def kernel(index):
        return SimpleNamespace(_cache=SimpleNamespace(_cache_file=SimpleNamespace(_index_path=str(index))))

    cached = tmp_path / "cached.nbi"
    cached.write_text("")
    monkeypatch.setattr(threads, "_announced", False)
    threads.announce_first_compile({"a": kernel(cached), "helper": object()})
    assert capsys.readouterr().err == ""
    threads.announce_first_compile({"a": kernel(cached), "b": kernel(tmp_path / "missing.nbi")})
    threads.announce_first_compile({"b": kernel(tmp_path / "missing.nbi")})
    assert capsys.readouterr().err.count("compiling kernels, first run only") == 1


def test_an_empty_numba_cache_is_announced_on_import(tmp_path):
    done = run("import spikeflow.torch.scan_kernels", NUMBA_CACHE_DIR=str(tmp_path))
    assert "spikeflow: compiling kernels, first run only" in done.stderr
