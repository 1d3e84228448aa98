"""Ensembles of compact, region-specific spiking networks for place recognition.

The places of a route are split into contiguous *regions*; each member is a small spiking network
that learns only its region's places, and the members train independently, in parallel on Ray.
A member has a hidden LIF layer and ``per_place`` leaky-integrator *place neurons* for each of
its places; a place's score is the largest (over time) mean potential of its place neurons. At
recognition time the ensemble answers the place with the highest score over all members.

A member has never seen the other regions, so some of its place neurons also respond to places
it does not know, and those false responses compete with the right member's answer. The
*hyperactive-neuron regulariser* shows each member calibration samples of the whole route and
removes the place neurons that respond to places outside its region as strongly as to their own
place (their rows leave the weights, so the member shrinks); each place keeps at least one neuron.

The ensemble is one spikeflow graph: each member a nested graph side by side on the shared
input, each followed by a fixed sparse ``Linear`` that averages its place neurons into the
ensemble's per-place output, so ``sf.simulate``, ``sf.save`` and every backend run it as is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from spikeflow.errors import DataError

PLACE_WEIGHTS, PLACE_NEURONS = "affine3", "li4"  # the place neurons and their input weights


@dataclass(frozen=True)
class MemberConfig:
    """Size and training of one member (or of the single network it is compared with).

    Attributes:
        hidden: hidden LIF neurons. per_place: place neurons per place.
        tau, tau_out: membrane time constants (s) at ``dt`` = 1 ms.
        epochs, lr, batch_size: training. seed: weights and shuffling (member ``k`` adds ``k``).
        max_out_fraction: the regulariser removes a place neuron that responds to more than this
            fraction of the places outside its region (responds: its mean score on that place's
            calibration samples reaches its mean score on its own place's).
    """

    hidden: int = 32
    per_place: int = 3
    tau: float = 10e-3
    tau_out: float = 20e-3
    epochs: int = 30
    lr: float = 5e-3
    batch_size: int = 16
    seed: int = 0
    max_out_fraction: float = 0.2


class PlaceLoss:
    """Cross-entropy on place scores: the largest over time of each place's mean place-neuron
    potential (``y [T, B, places * per_place]``, place neurons grouped by place)."""

    def __init__(self, per_place: int):
        self.per_place = int(per_place)

    def scores(self, y):
        t, b, c = y.shape
        return y.reshape(t, b, c // self.per_place, self.per_place).mean(-1).amax(0)

    def __call__(self, y, target):
        import torch.nn.functional as F

        return F.cross_entropy(self.scores(y), target)


def member_graph(inputs: int, places: int, config: MemberConfig, seed: int):
    """Input -> Affine -> LIF (hidden) -> Affine -> LI (``per_place`` neurons per place, grouped)."""
    from spikeflow.models import spiking_mlp

    return spiking_mlp(inputs, config.hidden, places * config.per_place, seed, tau=config.tau, tau_out=config.tau_out,
                       metadata={"place_of_neuron": np.repeat(np.arange(places), config.per_place).tolist()})


def train_member(x: np.ndarray, labels: np.ndarray, places: int, config: MemberConfig, seed: int):
    """Train a member on ``x [N, T, F]`` with labels ``0..places-1``; return its trained graph."""
    import torch

    import spikeflow as sf
    from spikeflow.train import Trainer

    torch.manual_seed(seed)
    graph = member_graph(x.shape[-1], places, config, seed)
    net = sf.to_torch(graph, dtype=torch.float32)
    Trainer(net, loss=PlaceLoss(config.per_place), lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
            seed=seed, progress=False).fit((x, labels))
    trained = sf.to_graph(net)
    trained.metadata = dict(graph.metadata)
    return trained


def _time_major(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(1, 0, 2), dtype=np.float64)


def neuron_scores(graph, x: np.ndarray, backend: str = "numba-event") -> np.ndarray:
    """``[N, C]``: each output neuron's largest potential over time, for ``x [N, T, F]``."""
    import spikeflow as sf

    return np.asarray(sf.simulate(graph, _time_major(x), backend=backend).output).max(axis=0)


def place_scores(graph, x: np.ndarray, backend: str = "numba-event") -> np.ndarray:
    """``[N, places]`` place scores of an ensemble graph (or a single network whose outputs are
    one per place) for ``x [N, T, F]``."""
    return neuron_scores(graph, x, backend)


def hyperactive_neurons(scores: np.ndarray, place_of_neuron: np.ndarray, place: np.ndarray, region: np.ndarray,
                        max_out_fraction: float) -> np.ndarray:
    """Boolean mask ``[C]`` of the place neurons to remove.

    Args:
        scores: ``[N, C]`` place-neuron scores on calibration samples (:func:`neuron_scores`).
        place_of_neuron: ``[C]`` the region-local place (0..len(region)-1) of each neuron.
        place: ``[N]`` the route place of each calibration sample.
        region: the route places this member is responsible for.
        max_out_fraction: a neuron responding to more than this fraction of the out-of-region
            places is hyperactive.

    Every place keeps its least hyperactive neuron, so no place of the region is lost.
    """
    region = np.asarray(region)
    outside = np.setdiff1d(np.unique(place), region)
    if outside.size == 0:
        return np.zeros(scores.shape[1], dtype=bool)
    own = np.stack([scores[place == region[p], j].mean() for j, p in enumerate(place_of_neuron)])  # [C]
    foreign = np.stack([scores[place == q].mean(axis=0) for q in outside])  # [outside, C]
    fraction = (foreign >= own).mean(axis=0)
    remove = fraction > max_out_fraction
    for p in np.unique(place_of_neuron):
        mine = np.flatnonzero(place_of_neuron == p)
        if remove[mine].all():
            remove[mine[np.argmin(fraction[mine])]] = False
    return remove


def remove_place_neurons(graph, remove: np.ndarray):
    """A copy of a member without the place neurons marked in ``remove`` (their rows of the
    place weights and their LI parameters); ``metadata["place_of_neuron"]`` follows."""
    from spikeflow.ir import Graph, nodes as n

    keep = ~np.asarray(remove, dtype=bool)
    weights, neurons = graph.nodes[PLACE_WEIGHTS], graph.nodes[PLACE_NEURONS]
    nodes = dict(graph.nodes)
    nodes[PLACE_WEIGHTS] = n.Affine(weight=weights.weight[keep], bias=weights.bias[keep])
    nodes[PLACE_NEURONS] = replace(neurons, **{f: np.asarray(getattr(neurons, f))[keep] for f in ("tau", "r")})
    nodes["output"] = n.Output(shape=(int(keep.sum()),))
    metadata = {**graph.metadata, "place_of_neuron": np.asarray(graph.metadata["place_of_neuron"])[keep].tolist()}
    return Graph(nodes, graph.edges, dt=graph.dt, integration=graph.integration, metadata=metadata).validate()


def ensemble_graph(members: list, regions: list[np.ndarray], places: int):
    """One graph holding every member side by side: the shared input feeds each nested member,
    and a fixed sparse ``Linear`` averages member ``k``'s place neurons into its places'
    positions of the ``places``-long output (a single network covering every place works too)."""
    import scipy.sparse as sp

    from spikeflow.ir import Graph, nodes as n

    if len(members) != len(regions):
        raise DataError(f"ensemble_graph: {len(members)} members but {len(regions)} regions")
    inputs = {m.shapes()["input"] for m in members}
    if len(inputs) != 1:
        raise DataError(f"ensemble_graph: members disagree on the input shape: {sorted(inputs)}")
    nodes: dict[str, Any] = {"input": n.Input(shape=inputs.pop()), "output": n.Output(shape=(places,))}
    edges = []
    for k, (member, region) in enumerate(zip(members, regions)):
        region = np.asarray(region)
        local = np.asarray(member.metadata.get("place_of_neuron", []), dtype=np.int64)
        if member.shapes()["output"] != (len(local),) or not np.array_equal(np.unique(local), np.arange(len(region))):
            raise DataError(f"ensemble_graph: member {k} must have metadata 'place_of_neuron' covering its {len(region)} places "
                            f"once per output neuron")
        per_place = np.bincount(local, minlength=len(region))
        placement = sp.csr_array((1.0 / per_place[local], (region[local], np.arange(len(local)))), shape=(places, len(local)))
        nodes[f"member{k}"] = member
        nodes[f"places{k}"] = n.Linear(weight=placement)
        edges += [("input", f"member{k}"), (f"member{k}", f"places{k}"), (f"places{k}", "output")]
    metadata = {"model": "region ensemble", "regions": [np.asarray(r).tolist() for r in regions]}
    return Graph(nodes, edges, dt=members[0].dt, metadata=metadata).validate()


def split_regions(places: int, count: int) -> list[np.ndarray]:
    """``count`` contiguous stretches of the route ``0..places-1``, as equal as possible."""
    if not 1 <= count <= places:
        raise DataError(f"split_regions: need 1 <= count <= places, got count={count}, places={places}")
    return [np.asarray(r) for r in np.array_split(np.arange(places), count)]


def recall_at_1(scores: np.ndarray, true_place: np.ndarray) -> float:
    """Fraction of queries whose best-scoring place is the true one."""
    return float((np.asarray(scores).argmax(axis=1) == np.asarray(true_place)).mean())


# ------------------------------------------------------------------------------------ Ray


class MemberTrainer:
    """A Ray actor that trains members: it compiles (or loads) its torch and numba kernels once,
    on a tiny member at start-up, and reuses them for every member it trains."""

    def __init__(self, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        rng = np.random.default_rng(0)
        x, labels = (rng.random((4, 3, 8)) < 0.5).astype(np.float32), np.array([0, 1, 0, 1])
        neuron_scores(train_member(x, labels, 2, MemberConfig(hidden=4, per_place=1, epochs=1, batch_size=4), 0), x)

    def train(self, x: np.ndarray, place: np.ndarray, region: np.ndarray, config: MemberConfig, seed: int,
              calibration: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
        """Train one member on the samples of its ``region`` (labels become 0..len(region)-1);
        with ``calibration = (x, place)`` also find its hyperactive neurons."""
        start = time.perf_counter()
        region = np.asarray(region)
        mine = np.isin(place, region)
        graph = train_member(x[mine], np.searchsorted(region, place[mine]), len(region), config, seed)
        remove = None
        if calibration is not None:
            scores = neuron_scores(graph, calibration[0])
            remove = hyperactive_neurons(scores, np.asarray(graph.metadata["place_of_neuron"]), calibration[1], region,
                                         config.max_out_fraction)
        return {"graph": graph, "remove": remove, "seconds": time.perf_counter() - start, "pid": os.getpid()}


def train_on_ray(x: np.ndarray, place: np.ndarray, regions: list[np.ndarray], config: MemberConfig, *, workers: int,
                 calibration: tuple[np.ndarray, np.ndarray] | None = None, address: str | None = None) -> tuple[list[dict[str, Any]], float]:
    """Train one network per region on ``workers`` Ray actors (one region covering every place
    trains a single network).

    Returns:
        the per-region results (``graph``, ``remove`` mask or None, ``seconds``, ``pid``) in
        region order, and the wall-clock seconds from handing out the first job to the last result
        (starting Ray and the actors is not counted).
    """
    from spikeflow.scale.cluster import ray_session

    with ray_session(address, num_cpus=workers) as ray:
        actor = ray.remote(num_cpus=1)(MemberTrainer)
        pool = [actor.remote() for _ in range(workers)]
        ray.get([a.__ray_ready__.remote() for a in pool])
        x_ref, place_ref = ray.put(x), ray.put(place)  # shipped once, shared by every job
        calib_ref = ray.put(calibration) if calibration is not None else None
        start = time.perf_counter()
        refs = [pool[k % workers].train.remote(x_ref, place_ref, region, config, config.seed + k, calib_ref)
                for k, region in enumerate(regions)]
        results = ray.get(refs)
        seconds = time.perf_counter() - start
        for a in pool:
            ray.kill(a)
    return results, seconds


# --------------------------------------------------------------------- the whole comparison


def compare_place_recognition(config: MemberConfig = MemberConfig(), *, places: int = 40, regions: int = 4,
                              train_repeats: int = 6, calibration_repeats: int = 2, query_repeats: int = 2,
                              workers: tuple[int, ...] = (1, 2), address: str | None = None, out: str | None = None,
                              seed: int = 0) -> dict[str, Any]:
    """Region ensemble vs one SNN of the same size vs sum of absolute differences, on the
    photograph traverses of :mod:`spikeflow.datasets.places`.

    Members train on the reference traverse (``train_repeats`` samples per place); the regulariser
    calibrates on a separate traverse under the query's kind of conditions (other offsets and noise
    than the query's); Recall@1 is measured on the query traverse. The members are trained once
    per entry of ``workers`` (Ray actors) to time the speed-up; the trained graphs must agree.

    Returns:
        ``{"rows": [{"method", "recall_at_1", "neurons", "train_seconds"}], "timing": {workers:
        wall-clock seconds}, "member_seconds": {workers: [seconds per member]}, "graphs",
        "paths", "removed", "data"}``; with ``out``, the ensemble is saved there.
    """
    import spikeflow as sf
    from spikeflow.datasets.places import QUERY, REFERENCE, sad_match, traverse

    kwargs = {"places": places}
    train = traverse(REFERENCE, train_repeats, seed=seed, **kwargs)
    calibration = traverse(QUERY, calibration_repeats, seed=seed + 1000, **kwargs)
    query = traverse(QUERY, query_repeats, seed=seed + 2000, **kwargs)
    parts = split_regions(places, regions)
    timing, member_seconds, results = {}, {}, None
    for count in workers:
        run, timing[count] = train_on_ray(train["x"], train["place"], parts, config, workers=count,
                                          calibration=(calibration["x"], calibration["place"]), address=address)
        if results is not None and not all(np.array_equal(a["graph"].nodes[PLACE_WEIGHTS].weight, b["graph"].nodes[PLACE_WEIGHTS].weight)
                                           for a, b in zip(results, run)):
            raise DataError("compare_place_recognition: members trained on different worker counts differ (training is not deterministic)")
        results = run
        member_seconds[count] = [r["seconds"] for r in run]
    members = [r["graph"] for r in results]
    regularised = [remove_place_neurons(r["graph"], r["remove"]) for r in results]
    single_config = replace(config, hidden=config.hidden * regions)
    (single,), single_seconds = train_on_ray(train["x"], train["place"], [np.arange(places)], single_config, workers=1, address=address)
    graphs = {
        "ensemble": ensemble_graph(members, parts, places),
        "ensemble + regulariser": ensemble_graph(regularised, parts, places),
        "single SNN (same size)": ensemble_graph([single["graph"]], [np.arange(places)], places),
    }

    def neurons(graph) -> int:
        flat, shapes = graph.flatten(), graph.shapes()
        return int(sum(np.prod(shapes[k]) for k, v in flat.nodes.items() if type(v).__name__ in ("LIF", "LI")))

    ensemble_seconds = timing[min(timing)]
    rows = [{"method": name, "recall_at_1": recall_at_1(place_scores(g, query["x"]), query["place"]), "neurons": neurons(g),
             "train_seconds": single_seconds if name.startswith("single") else ensemble_seconds} for name, g in graphs.items()]
    match = sad_match(train["view"][:places], query["view"])  # the first repeat: every place once, in order
    rows.append({"method": "sum of absolute differences (non-spiking)", "recall_at_1": float((match == query["place"]).mean()),
                 "neurons": 0, "train_seconds": 0.0})
    paths = {}
    if out is not None:
        from pathlib import Path

        paths["ensemble"] = Path(out) / "place_ensemble.h5"
        sf.save(graphs["ensemble + regulariser"], paths["ensemble"])
    return {"rows": rows, "timing": timing, "member_seconds": member_seconds, "graphs": graphs, "paths": paths,
            "removed": [int(r["remove"].sum()) for r in results], "data": {"train": train, "calibration": calibration, "query": query}}
