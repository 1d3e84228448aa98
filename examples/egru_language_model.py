"""Character-level language model on CPython's reference-manual topics: EGRU vs GRU vs LSTM.

The text is ``pydoc_data.topics`` (ships with CPython, no download), topics joined in sorted key
order and split 90/5/5 into contiguous train/validation/test parts. Every model is an embedding,
one recurrent layer and a linear readout, with the same parameter count (the LSTM's hidden size
is chosen to match). Every model keeps its best validation checkpoint. Reports validation and
test bits per character and, for the EGRU, activity sparsity (the fraction of zero outputs ``y``),
then checks the EGRU against the numba-event runner.

Run:  .venv/bin/python examples/egru_language_model.py [--steps 6000] [--models egru,gru,lstm] [--quick]
      (add --skip-test while choosing hyperparameters: validation only)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numba
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spikeflow._atomic import atomic_path
from spikeflow.torch.egru import EGRU


def load_text() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Token ids of the train/validation/test parts and the vocabulary."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    data = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
    a, b = int(0.9 * len(data)), int(0.95 * len(data))
    return data[:a], data[a:b], data[b:], vocab


class CharModel(nn.Module):
    """Embedding -> recurrent layer -> linear readout; ``kind`` is "egru", "gru" or "lstm"."""

    def __init__(self, kind: str, vocab: int, embed: int, hidden: int, dropout: float = 0.0, **egru_kwargs):
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)  # on the readout's input
        if kind == "egru":
            self.rnn = EGRU(embed, hidden, **egru_kwargs)
        else:
            self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[kind](embed, hidden)
        self.readout = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        h, state = self.rnn(self.embed(x), state)
        return self.readout(self.drop(h)), state


def detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(*(s.detach() for s in state)) if hasattr(state, "_fields") else tuple(s.detach() for s in state)


def streams(data: np.ndarray, batch: int) -> torch.Tensor:
    """The text cut into ``batch`` contiguous streams, time-major (T, batch)."""
    n = len(data) // batch
    return torch.from_numpy(data[: n * batch].reshape(batch, n).T.copy())


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def lstm_hidden_for(target: int, vocab: int, embed: int) -> int:
    """The LSTM hidden size whose model has the parameter count closest to ``target``."""
    def count(h):
        return vocab * embed + 4 * (embed * h + h * h + 2 * h) + h * vocab + vocab

    return min(range(8, 2048), key=lambda h: abs(count(h) - target))


@torch.no_grad()
def evaluate(model: CharModel, data: np.ndarray, seq: int = 200, batch: int = 16) -> tuple[float, float]:
    """Bits per character over ``data`` (state carried across chunks) and EGRU activity sparsity."""
    model.eval()
    x = streams(data, batch)
    state, nll, count, zeros, total = None, 0.0, 0, 0.0, 0
    for start in range(0, len(x) - 1, seq):
        inp, tgt = x[start : start + seq], x[start + 1 : start + seq + 1]
        inp = inp[: len(tgt)]
        logits, state = model(inp, state)
        nll += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum").item()
        count += tgt.numel()
        if model.kind == "egru":
            zeros += model.rnn.last_stats[0]["activity_sparsity"] * tgt.numel()
            total += tgt.numel()
    return nll / count / math.log(2), (zeros / total if total else float("nan"))


def train(model: CharModel, data: np.ndarray, steps: int, seq: int, batch: int, lr: float, act_rate: float,
          target_rate: float, act_warmup: float = 0.0, val: np.ndarray | None = None,
          eval_every: int = 0, act_l1: float = 0.0) -> tuple[float, float, int]:
    """Truncated BPTT with Adam, one-cycle schedule and gradient clipping.

    With ``val`` and ``eval_every``, the validation bpc is measured every ``eval_every`` steps and
    at the end, and the model is left at its best validation checkpoint (early stopping, the same
    rule for every model). Returns the seconds spent, the mean training bits per character of the
    last 10% of steps and the step of the kept checkpoint.

    The EGRU's activity regularisers (event rate weighted ``act_rate``, L1 on ``y`` weighted
    ``act_l1``) are ramped in linearly over the first ``act_warmup`` fraction of the steps: the units
    first learn to carry information, then are pushed towards sparsity.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    x = streams(data, batch)
    state, pos, tail = None, 0, []
    best, best_step, best_weights = math.inf, steps, None
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {model.kind}", leave=False)
    for step in bar:
        if pos + seq + 1 > len(x):
            state, pos = None, 0
        model.train()
        logits, state = model(x[pos : pos + seq], detach(state))
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[pos + 1 : pos + seq + 1].reshape(-1))
        total = loss
        if model.kind == "egru" and (act_rate or act_l1):
            ramp = min(1.0, step / (act_warmup * steps)) if act_warmup else 1.0
            total = total + ramp * model.rnn.activity_loss(l1=act_l1, rate=act_rate, target_rate=target_rate)
        opt.zero_grad()
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        pos += seq
        if step >= steps - max(1, steps // 10):
            tail.append(loss.item() / math.log(2))
        post = {"bpc": f"{loss.item() / math.log(2):.3f}"}
        if model.kind == "egru":
            post["sparsity"] = f"{model.rnn.last_stats[0]['activity_sparsity']:.2f}"
        if val is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            bpc, val_sparsity = evaluate(model, val)
            if bpc < best:
                best, best_step = bpc, step + 1
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            zeros = ""
            if model.kind == "egru":
                zeros = f", zero y train {post['sparsity']} / val {val_sparsity:.3f}"
            bar.write(f"{model.kind} step {step + 1}: train bpc {loss.item() / math.log(2):.3f}, val bpc {bpc:.3f}{zeros}")
        bar.set_postfix(post)
    seconds = time.perf_counter() - start
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return seconds, float(np.mean(tail)), best_step


def check_numba_events(model: CharModel, data: np.ndarray, length: int = 300) -> bool:
    """The trained EGRU run by the numba-event runner in float64 gives the torch forward's events."""
    from spikeflow.backends.numba import egru as nb
    from spikeflow.torch.egru import egru_from_node

    nodes = model.rnn.to_nodes()
    with torch.no_grad():
        emb = model.embed(torch.from_numpy(data[:length])).double()[:, None]
        want, _ = egru_from_node(nodes).eval()(emb)
    stream = nb.EGRUStream(nodes)
    got = np.stack([stream.step(emb[t, 0].numpy()) for t in range(length)])
    return bool(np.array_equal(got, want[:, 0].numpy()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6000, help="training steps, the same for every model")
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--embed", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-3, help="peak learning rate of the GRU and LSTM (best on validation)")
    ap.add_argument("--egru-lr", type=float, default=7e-3, help="peak learning rate of the EGRU (best on validation)")
    ap.add_argument("--threshold-mean", type=float, default=0.3)
    ap.add_argument("--act-rate", type=float, default=5.0, help="weight of the event-rate regulariser")
    ap.add_argument("--target-rate", type=float, default=0.2)
    ap.add_argument("--act-l1", type=float, default=0.0, help="weight of an L1 penalty on the EGRU outputs y")
    ap.add_argument("--zoneout", type=float, default=0.1,
                    help="EGRU zoneout probability during training (its regulariser, best on validation)")
    ap.add_argument("--dropconnect", type=float, default=0.0, help="EGRU DropConnect probability on recurrent weights")
    ap.add_argument("--act-warmup", type=float, default=0.2, help="fraction of steps over which the regulariser ramps in")
    ap.add_argument("--trace", type=float, default=0.0, help="EGRU output-trace decay read out by the linear layer")
    ap.add_argument("--dampening", type=float, default=0.7, help="EGRU pseudo-derivative dampening γ")
    ap.add_argument("--width", type=float, default=1.0, help="EGRU pseudo-derivative width ε")
    ap.add_argument("--eval-every", type=int, default=500,
                    help="validate every this many steps and keep the best checkpoint (0: keep the last)")
    ap.add_argument("--dropout", type=float, default=0.3, help="dropout on the readout input of the GRU and LSTM")
    ap.add_argument("--egru-dropout", type=float, default=0.1,
                    help="dropout on the readout input of the EGRU (best on validation)")
    ap.add_argument("--models", default="egru,gru,lstm")
    ap.add_argument("--skip-test", action="store_true", help="validation only (for choosing hyperparameters)")
    ap.add_argument("--quick", action="store_true", help="a 40-step smoke run")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads (1 is fastest on a shared machine)")
    ap.add_argument("--out", default="examples/out/egru_language_model.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.hidden = 40, 64
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(0)
    train_ids, val_ids, test_ids, vocab = load_text()
    print(f"text: {len(train_ids)} / {len(val_ids)} / {len(test_ids)} chars (train/val/test), vocabulary {len(vocab)}")
    results = {}
    gru_params = None
    for kind in args.models.split(","):
        torch.manual_seed(0)
        if kind == "lstm":
            target = gru_params or n_params(CharModel("gru", len(vocab), args.embed, args.hidden))
            hidden = lstm_hidden_for(target, len(vocab), args.embed)
        else:
            hidden = args.hidden
        kwargs = dict(threshold_mean=args.threshold_mean, pseudo_derivative_width=args.width,
                      pseudo_derivative_dampening=args.dampening, trace_decay=args.trace,
                      zoneout=args.zoneout, dropconnect=args.dropconnect) if kind == "egru" else {}
        dropout = args.egru_dropout if kind == "egru" else args.dropout
        model = CharModel(kind, len(vocab), args.embed, hidden, dropout, **kwargs)
        if kind == "gru":
            gru_params = n_params(model)
        lr = args.egru_lr if kind == "egru" else args.lr
        seconds, train_bpc, best_step = train(model, train_ids, args.steps, args.seq, args.batch, lr, args.act_rate, args.target_rate, args.act_warmup,
                                             val_ids, args.eval_every, args.act_l1 if kind == "egru" else 0.0)
        val_bpc, val_sparsity = evaluate(model, val_ids)
        test_bpc, sparsity = (None, None) if args.skip_test else evaluate(model, test_ids)
        results[kind] = {"hidden": hidden, "params": n_params(model), "lr": lr, "dropout": dropout, "train_seconds": round(seconds, 1),
                         "kept_step": best_step,
                         "train_bpc_last10pct": round(train_bpc, 4), "val_bpc": round(val_bpc, 4), "test_bpc": None if test_bpc is None else round(test_bpc, 4)}
        if kind == "egru":
            results[kind]["val_activity_sparsity"] = round(val_sparsity, 4)
            results[kind]["activity_sparsity"] = None if sparsity is None else round(sparsity, 4)
            if not args.skip_test:
                results[kind]["numba_event_exact"] = check_numba_events(model, test_ids)
        print(f"{kind:5s} {results[kind]}")
    print(f"\n{'model':6s} {'hidden':>6s} {'params':>7s} {'lr':>7s} {'train s':>8s} {'train bpc':>9s} {'val bpc':>8s} "
          f"{'test bpc':>8s} {'zero y':>7s}")
    for kind, r in results.items():
        zero = f"{r['activity_sparsity']:.3f}" if r.get("activity_sparsity") is not None else "-"
        test = f"{r['test_bpc']:.3f}" if r["test_bpc"] is not None else "-"
        print(f"{kind:6s} {r['hidden']:6d} {r['params']:7d} {r['lr']:7.0e} {r['train_seconds']:8.1f} "
              f"{r['train_bpc_last10pct']:9.3f} {r['val_bpc']:8.3f} {test:>8s} {zero:>7s}")
    if "egru" in results and "gru" in results:
        val_ratio = results["egru"]["val_bpc"] / results["gru"]["val_bpc"]
        results["egru_over_gru_val_bpc"] = round(val_ratio, 4)
        print(f"EGRU/GRU validation bpc = {val_ratio:.3f}, EGRU validation activity sparsity = "
              f"{results['egru']['val_activity_sparsity']:.3f}")
    if "egru" in results and "gru" in results and not args.skip_test:
        ratio = results["egru"]["test_bpc"] / results["gru"]["test_bpc"]
        results["egru_over_gru_bpc"] = round(ratio, 4)
        ok = ratio <= 1.05 and results["egru"]["activity_sparsity"] >= 0.8
        print(f"EGRU/GRU test bpc = {ratio:.3f} (target <= 1.05), EGRU activity sparsity = "
              f"{results['egru']['activity_sparsity']:.3f} (target >= 0.80): {'met' if ok else 'NOT met'}")
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
