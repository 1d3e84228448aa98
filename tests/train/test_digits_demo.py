"""End to end: the digits demo trains, saves, reloads and draws (the job behind `make demo`)."""

import pytest

from spikeflow.cli import main, run_demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_reaches_90_percent_and_reloads_identically(tmp_path):
    result = run_demo(tmp_path, epochs=3, progress=False)
    assert result["test_acc"] >= 0.90
    for kind in ("hdf5", "nir"):
        check = result["reload"][kind]
        assert check["same_predictions"], kind
        assert check["acc"] == result["test_acc"]
    for name in ("hdf5", "nir", "raster", "membrane", "curves"):
        assert result["paths"][name].is_file() and result["paths"][name].stat().st_size > 0
    for name in ("raster", "membrane", "curves"):
        assert result["paths"][name].read_bytes()[:8] == PNG_MAGIC
    assert len(result["trainer"].history["val_acc"]) == 3
    # the saved graph is what `spikeflow info` reads back
    assert main(["info", str(result["paths"]["hdf5"])]) == 0
