"""Event arrays: dtype identical to tonic's, checks, binning (the one binner of event_bins), DataLoader collate."""

import numpy as np
import pytest
import torch

from spikeflow.datasets.events import EVENT_DTYPE, EventCollate, bin_events, check_events, check_index, make_events, sort_events, to_frames
from spikeflow.errors import DataError, SpikeflowError

SENSOR = (34, 34, 2)


def random_events(n, seed=0, t_max=300_000, sensor=SENSOR):
    rng = np.random.default_rng(seed)
    return sort_events(make_events(rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.integers(0, t_max, n), rng.integers(0, 2, n)))


def reference_frames(events, sensor, n_bins, duration):
    """Loop-by-loop binning: bin k holds events with k*dur/T <= t < (k+1)*dur/T."""
    w, h, p = sensor
    out = np.zeros((n_bins, p, h, w), dtype=np.int64)
    for e in events:
        k = int(np.floor(e["t"] / (duration / n_bins)))
        if 0 <= e["t"] < duration:
            out[min(k, n_bins - 1), int(e["p"]), e["y"], e["x"]] += 1
    return out


def test_dtype_is_tonics():
    import tonic

    assert EVENT_DTYPE == tonic.io.events_struct


def test_tonic_transforms_apply_directly():
    import tonic.transforms as T

    ev = random_events(500)
    flipped = T.RandomFlipLR(sensor_size=SENSOR, p=1.0)(ev)
    assert np.array_equal(flipped["x"], SENSOR[0] - 1 - ev["x"])
    assert flipped.dtype == EVENT_DTYPE
    dropped = T.DropEvent(p=0.5)(ev)
    assert 0 < len(dropped) < len(ev)


@pytest.mark.parametrize("n_bins,duration", [(1, 300_000), (7, 300_000), (10, 315_000), (13, 100_000)])
def test_to_frames_matches_reference(n_bins, duration):
    ev = random_events(2000, seed=n_bins)
    frames = to_frames(ev, SENSOR, n_bins, duration)
    assert frames.shape == (n_bins, 2, 34, 34)
    assert np.array_equal(frames, reference_frames(ev, SENSOR, n_bins, duration))


@pytest.mark.parametrize("n_bins,duration", [(7, 300_000), (10, 315_000)])
def test_to_frames_is_the_backends_binner(n_bins, duration):
    """to_frames and bin_events (what sf.simulate bins event inputs with) give the same counts."""
    ev = random_events(2000, seed=n_bins, t_max=duration)
    np.testing.assert_array_equal(to_frames(ev, SENSOR, n_bins, duration), bin_events(ev, SENSOR, duration / n_bins, n_bins))


def test_to_frames_from_a_later_start_drops_what_lies_outside():
    ev = random_events(2000, seed=3)
    start, duration, n_bins = 50_000, 200_000, 9
    shifted = ev[(ev["t"] >= start) & (ev["t"] < start + duration)].copy()
    shifted["t"] -= start
    frames = to_frames(ev, SENSOR, n_bins, duration, start=start)
    assert np.array_equal(frames, reference_frames(shifted, SENSOR, n_bins, duration))
    assert frames.sum() == len(shifted) < len(ev)


@pytest.mark.parametrize("kw, words", [({"n_bins": 0}, "n_bins"), ({"n_bins": True}, "n_bins"), ({"duration": float("nan")}, "duration"),
                                       ({"duration": -5}, "duration")])
def test_to_frames_refuses_bad_arguments(kw, words):
    args = {"n_bins": 4, "duration": 1000, **kw}
    with pytest.raises(DataError, match=words):
        to_frames(random_events(10), SENSOR, **args)


def test_to_frames_empty_and_default_duration():
    assert to_frames(random_events(0), SENSOR, 5, 1000).sum() == 0
    ev = random_events(100)
    assert to_frames(ev, SENSOR, 4).sum() == 100


def test_check_events_names_the_problem():
    ev = random_events(10)
    ev["x"][3] = 40
    with pytest.raises(DataError, match="event 3 has x=40"):
        check_events(ev, SENSOR)
    ev = random_events(10)[::-1]
    with pytest.raises(DataError, match="timestamps decrease at event 1"):
        check_events(ev, SENSOR)
    with pytest.raises(DataError, match="structured"):
        check_events(np.zeros(3), SENSOR)
    with pytest.raises(DataError, match="equal lengths"):
        make_events([1], [1, 2], [0], [0])


def test_check_index_is_an_index_error_too():
    assert check_index(-1, 5, "x") == 4
    with pytest.raises(IndexError):
        check_index(5, 5, "x")
    with pytest.raises(SpikeflowError):
        check_index("a", 5, "x")


def test_collate_bin_is_time_major_and_matches_to_frames():
    batch = [(random_events(300, seed=s), s) for s in range(3)]
    frames, labels = EventCollate(SENSOR, n_bins=6, duration=300_000)(batch)
    assert frames.shape == (6, 3, 2, 34, 34) and frames.dtype == torch.float32
    assert labels.tolist() == [0, 1, 2]
    for b, (ev, _) in enumerate(batch):
        assert np.array_equal(frames[:, b].numpy(), to_frames(ev, SENSOR, 6, 300_000))


def test_collate_pad_with_dataloader():
    data = [(random_events(n, seed=n), n % 10) for n in (5, 50, 17)]
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=EventCollate(SENSOR, mode="pad"))
    padded, lengths, labels = next(iter(loader))
    assert padded.shape == (3, 50, 4) and lengths.tolist() == [5, 50, 17]
    assert np.array_equal(padded[0, :5, 2].numpy(), data[0][0]["t"])
    assert padded[0, 5:].abs().sum() == 0
    with pytest.raises(DataError):
        EventCollate(SENSOR, mode="stack")(data)


def test_what_datasets_accept_simulate_accepts():
    """One validator and one binner: a one-channel recording with polarities 0 and 1 (as tonic's
    audio sets write them) passes check_events and runs in sf.simulate, both polarities in channel 0."""
    import spikeflow as sf
    from spikeflow.datasets import bin_events

    events = make_events([0, 1, 1, 2], [0, 0, 0, 0], [0, 1500, 1600, 2500], [0, 1, 0, 1])
    sensor = (3, 1, 1)
    check_events(events, sensor)
    frames = bin_events(events, sensor, bin_width=1000.0)
    assert frames.shape == (3, 1, 1, 3) and frames.sum() == 4 and frames[1, 0, 0, 1] == 2
    g = sf.Graph.sequential(sf.ir.Input(shape=(1, 1, 3)), sf.ir.Flatten(), sf.ir.Linear(weight=np.eye(3)), sf.ir.IF(v_threshold=0.5, r=1e3), dt=1e-3)
    for backend in ("numba-event", "numba-clock", "torch"):
        res = sf.simulate(g, events, backend=backend, sensor_size=sensor)
        assert res.output[:, 0].sum() == 3, backend  # one spike per pixel that saw events
    with pytest.raises(DataError, match="field 't'"):
        check_events(make_events([0], [0], [-5], [0]), sensor)
