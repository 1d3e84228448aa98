"""What the pretrained models' recipes need from a pipeline beyond event classification (docs/models.md):

* data: ``dataset = "sklearn-digits"`` (scikit-learn's 8x8 digits, Bernoulli rate-coded into
  ``bins`` steps; with ``[train] fresh_spikes`` the train stage draws new spikes every epoch)
  and ``dataset = "pydoc-topics"`` (CPython's reference-manual text, for the
  char-LM); neither needs a ``root``;
* train and evaluate with ``task = "next-char"``: the EGRU char-LM trained by truncated BPTT
  (:func:`fit_char_lm`) and measured in bits per character and
  next-character accuracy on every backend.

The stages in :mod:`spikeflow.pipeline.stages` hand over to these functions; their results have the
shapes of the run dict (docs/pipeline.md), so caching, logs and the report work unchanged.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

ZOO_DATASETS = ("sklearn-digits", "pydoc-topics")
TEXT_DATASETS = ("pydoc-topics",)
RATE_CODED = ("sklearn-digits",)  # their data stage also keeps the coded values (``v_*``), for [train] fresh_spikes
# char-LM training settings the schema has no key for (those of examples/egru_language_model.py)
LM_SETTINGS = {"zoneout": 0.1, "act_rate": 5.0, "target_rate": 0.2, "act_warmup": 0.2, "clip": 1.0}


# ------------------------------------------------------------------------------------ data


def load_zoo_data(cfg: dict[str, Any], seed: int, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, Any], list]:
    """The data stage for :data:`ZOO_DATASETS`: splits, facts for the report, no event examples.

    ``sklearn-digits``: ``x_*`` spike frames ``[N, bins, 64]`` (train, validation and test spikes
    drawn once, seeded ``seed``, ``seed + 1``, ``seed + 10``; the last is the pretrained model's test
    input), and ``v_*`` the values they code ``[N, 64]`` (:func:`rate_encoder`). ``pydoc-topics``: ``x_*`` and ``y_*`` are the character ids of each part; ``classes``
    is the vocabulary.
    """
    if cfg["dataset"] == "sklearn-digits":
        import torch

        from spikeflow.workflows import digits_split

        data = digits_split(seed)
        encode = rate_encoder(cfg)
        splits = {}
        for part, offset in (("train", 0), ("val", 1), ("test", 10)):
            limit = cfg["test_limit"] if part == "test" else cfg["train_limit"]
            x, y = data[f"x_{part}"], data[f"y_{part}"]
            x, y = (x[:limit], y[:limit]) if limit else (x, y)
            spikes = encode(torch.as_tensor(x), torch.Generator().manual_seed(seed + offset))
            splits[f"v_{part}"] = np.ascontiguousarray(x, dtype=np.float32)
            splits[f"x_{part}"] = np.ascontiguousarray(np.swapaxes(spikes.numpy(), 0, 1), dtype=np.float32)
            splits[f"y_{part}"] = np.asarray(y, dtype=np.int64)
        info = {"sensor_size": [8, 8, 1], "classes": [str(c) for c in range(10)]}
    else:
        from spikeflow.datasets.text import encode_text, pydoc_topics_text, split_text

        parts = split_text(pydoc_topics_text())
        vocabulary = "".join(sorted(set("".join(parts.values()))))
        splits = {}
        for part in ("train", "val", "test"):
            limit = cfg["test_limit"] if part == "test" else cfg["train_limit"]
            ids = encode_text(parts[part], vocabulary)
            ids = ids[:limit] if limit else ids
            splits[f"x_{part}"] = splits[f"y_{part}"] = ids
        info = {"sensor_size": [len(vocabulary), 1, 1], "classes": list(vocabulary)}
    info.update(dataset=cfg["dataset"], bins=cfg["bins"], step_us=None, n_train=len(splits["y_train"]), n_val=len(splits["y_val"]),
                n_test=len(splits["y_test"]))
    return splits, info, []


def rate_encoder(cfg: dict[str, Any]):
    """The encoder of a :data:`RATE_CODED` dataset: ``encoder(values, generator) -> [bins, B, ...]``
    spikes (Bernoulli, :class:`spikeflow.train.RateEncoder`), as the data stage draws them."""
    from spikeflow.train import RateEncoder

    return RateEncoder(cfg["bins"])


# ------------------------------------------------------------------------------- next-char


def train_next_char(ctx, entry) -> dict[str, Any]:
    """The train stage for ``task = "next-char"``: the model's char-LM graph trained on the text."""
    import spikeflow as sf
    from spikeflow.pipeline.stages import GRAPH

    cfg = ctx.config["train"]
    data = ctx.frames()
    vocabulary = "".join(ctx.results["data"]["classes"])
    seq = cfg["tbptt"] or ctx.config["data"]["bins"]
    graph, history = fit_char_lm(ctx.graph("model"), vocabulary, data["x_train"], data["x_val"], seq=seq,
                                 batch=ctx.config["data"]["batch_size"], epochs=cfg["epochs"], lr=cfg["lr"], seed=ctx.seed,
                                 progress=ctx.progress,
                                 on_epoch=lambda epoch, values: ctx.log("train", epoch, values))  # each epoch's row as it ends
    sf.save(graph, entry.path(GRAPH))
    # bits per character in the loss columns; the report's training curves show them
    result = {"history": {"loss": history["train_bpc"], "train_acc": [], "val_loss": history["val_bpc"], "val_acc": []},
              "strategy": cfg["strategy"], "epochs": cfg["epochs"], "kept_epoch": history["kept_epoch"]}
    entry.commit(result, [GRAPH])
    return result


def fit_char_lm(init, vocabulary: str, train_ids: np.ndarray, val_ids: np.ndarray, *, seq: int, batch: int, epochs: int,
                lr: float, seed: int = 0, progress: bool = True, on_epoch=None):
    """Train a char-LM graph (``embed`` -> ``egru`` -> ``readout``, as :func:`spikeflow.models.egru_char_lm`)
    for next-character prediction; keep the epoch with the best validation bits per character.

    Truncated BPTT over chunks of ``seq`` characters of ``batch`` parallel streams (the state is
    carried between chunks), Adam with a one-cycle schedule peaking at ``lr``, gradient clipping,
    zoneout and an event-rate regulariser ramped in (:data:`LM_SETTINGS`). ``on_epoch(epoch,
    {"train_bpc", "val_bpc"})``, when given, is called as each epoch ends.

    Returns:
        ``(graph, history)`` with ``history = {"train_bpc", "val_bpc", "kept_epoch"}``.
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from spikeflow.datasets.text import char_streams
    from spikeflow.ir import nodes
    from spikeflow.ir.graph import Graph
    from spikeflow.torch.egru import egru_from_node

    class CharNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(len(vocabulary), init.nodes["embed"].weight.shape[0])
            self.rnn = egru_from_node(init.nodes["egru"], dtype=torch.float32, zoneout=LM_SETTINGS["zoneout"])
            self.readout = nn.Linear(init.nodes["readout"].weight.shape[1], len(vocabulary))
            with torch.no_grad():
                self.embed.weight.copy_(torch.from_numpy(init.nodes["embed"].weight.T))
                self.readout.weight.copy_(torch.from_numpy(init.nodes["readout"].weight))
                self.readout.bias.copy_(torch.from_numpy(init.nodes["readout"].bias))

        def forward(self, x, state=None):
            h, state = self.rnn(self.embed(x), state)
            return self.readout(h), state

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CharNet()
        train = torch.from_numpy(char_streams(train_ids, batch))
        val = torch.from_numpy(char_streams(val_ids, min(16, max(1, len(val_ids) // 2))))
        per_epoch = max(1, (len(train) - 1) // seq)
        total = epochs * per_epoch
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 2), pct_start=0.1)
        history: dict[str, Any] = {"train_bpc": [], "val_bpc": []}
        best, best_state, step = math.inf, None, 0
        for epoch in range(epochs):
            model.train()
            state, losses = None, []
            for i in tqdm(range(per_epoch), desc=f"char-LM: epoch {epoch + 1}/{epochs}", disable=not progress, leave=False):
                chunk = train[i * seq : (i + 1) * seq + 1]
                state = None if state is None else type(state)(*(s.detach() for s in state))
                logits, state = model(chunk[:-1], state)
                loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[1:].reshape(-1))
                ramp = min(1.0, step / (LM_SETTINGS["act_warmup"] * total))
                reg = model.rnn.activity_loss(rate=LM_SETTINGS["act_rate"], target_rate=LM_SETTINGS["target_rate"])
                opt.zero_grad()
                (loss + ramp * reg).backward()
                nn.utils.clip_grad_norm_(model.parameters(), LM_SETTINGS["clip"])
                opt.step()
                sched.step()
                step += 1
                losses.append(loss.item() / math.log(2))
            model.eval()
            with torch.no_grad():
                logits, _ = model(val[:-1])
                bpc = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), val[1:].reshape(-1)).item() / math.log(2)
            history["train_bpc"].append(float(np.mean(losses)))
            history["val_bpc"].append(bpc)
            if progress:
                tqdm.write(f"char-LM epoch {epoch + 1}/{epochs}: train bpc {history['train_bpc'][-1]:.3f}, val bpc {bpc:.3f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, {"train_bpc": history["train_bpc"][-1], "val_bpc": bpc})
            if bpc < best:
                best, best_state = bpc, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if best_state is not None:
            model.load_state_dict(best_state)
    (egru,) = model.rnn.to_nodes()
    layers = {
        "input": nodes.Input(shape=(len(vocabulary),)),
        "embed": nodes.Linear(weight=model.embed.weight.detach().double().numpy().T.copy()),
        "egru": egru,
        "readout": nodes.Affine(weight=model.readout.weight.detach().double().numpy(), bias=model.readout.bias.detach().double().numpy()),
        "output": nodes.Output(shape=(len(vocabulary),)),
    }
    names = list(layers)
    graph = Graph(layers, list(zip(names, names[1:])), dt=init.dt, metadata={**init.metadata, "vocabulary": vocabulary}).validate()
    history["kept_epoch"] = int(np.argmin(history["val_bpc"])) + 1 if history["val_bpc"] else 0
    return graph, history


def evaluate_next_char(ctx, entry) -> dict[str, Any]:
    """The evaluate stage for ``task = "next-char"``: the test text in ``samples`` parallel streams
    on every backend (bits per character, next-character accuracy, synaptic events, time), and the
    EGRU's events of the first stream for the report."""
    import torch

    import spikeflow as sf
    from spikeflow.datasets.text import char_streams
    from spikeflow.pipeline.cache import write_arrays
    from spikeflow.pipeline.stages import RECORD

    cfg = ctx.config["evaluate"]
    graph = ctx.graph(ctx.graph_stage)
    ids = ctx.frames()["x_test"]
    vocab = len(ctx.results["data"]["classes"])
    backends = {}
    for name in cfg["backends"]:
        streams = max(1, min(cfg["sample_limits"].get(name, cfg["samples"]), len(ids) // 2))
        stream_ids = char_streams(ids, streams)
        x = np.eye(vocab)[stream_ids[:-1]]
        res = sf.simulate(graph, x, backend=name)
        logits, target = torch.from_numpy(np.asarray(res.output, dtype=np.float64)), torch.from_numpy(stream_ids[1:])
        nll = float(torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), target.reshape(-1), reduction="sum"))
        n = int(target.numel())
        backends[name] = {"accuracy": float((logits.argmax(-1) == target).double().mean()), "bits_per_char": nll / n / math.log(2),
                          "samples": streams, "synaptic_events": float(res.stats["synaptic_events"]) / streams,
                          "seconds_per_sample": float(res.stats["wall_time"]) / streams}
        ctx.log("evaluate", 0, {f"{name}/{k}": v for k, v in backends[name].items()})
        ctx.say(f"  {name}: {backends[name]['bits_per_char']:.3f} bits/char, next-character accuracy "
                f"{backends[name]['accuracy']:.1%} on {streams} streams")
    egru = next(k for k, v in graph.flatten().nodes.items() if isinstance(v, sf.ir.EGRU))
    first = char_streams(ids, 1)[:200, 0]
    start = time.perf_counter()
    with torch.no_grad():
        _, rec = sf.to_torch(graph, dtype=torch.float64).run(torch.from_numpy(np.eye(vocab)[first][:, None]), record=(egru,))
    y = rec[egru][:, 0].numpy()
    write_arrays(entry.path(RECORD), {f"spikes/{egru}": (y != 0).astype(np.float64), f"v/{egru}": y})
    node = graph.flatten().nodes[egru]
    fan_out = 3 * node.hidden_size + vocab  # each event drives the recurrent gates and the readout
    layers = {egru: {"rate": float(np.mean(y != 0)), "synaptic_events": float(np.sum(y != 0)) * fan_out}}
    # one step per character, no duration: the report's time axes count steps
    result = {"backends": backends, "layers": layers,
              "record": {"dt": None, "nodes": [egru], "threshold": {egru: float(np.mean(node.threshold))}, "label": int(first[1])},
              "record_seconds": time.perf_counter() - start}
    entry.commit(result, [RECORD])
    return result
