"""A trained EGRU language model, pruned to 95 %, exported to the SpiNNaker 2 target.

The model is ``examples/egru_language_model.py``'s character model (embedding 16, one EGRU layer,
linear readout), trained on CPython's reference-manual topics at a **reduced budget** (default 200
steps of batch 16; the example's full run is 6,000 steps of batch 32), then pruned to 95 % with
``spikeflow.train.pruning.MagnitudePruner`` gradually (8 rounds, each followed by 20 retraining
steps; pruning at once is measured for comparison). The EGRU layer is exported (``Input -> EGRU ->
Output``; the input is the embedded text), and the script checks that every PE's data fits the
96 KB budget and that ``prog.run`` reproduces ``sf.simulate(..., backend="numba-event",
precision="float32")`` event for event on validation text. Writes ``--out`` (JSON) with bits per
character before and after pruning, PEs used (the paper's model: ~150) and data per PE.

Run: ``.venv/bin/python examples/spinnaker2_egru_lm.py [--steps 200] [--batch 16] [--hidden 1024]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import spikeflow as sf
from spikeflow._atomic import atomic_path
from spikeflow.ir import nodes as n
from spikeflow.train.pruning import MagnitudePruner

sys.path.insert(0, str(Path(__file__).parent))
from egru_language_model import CharModel, evaluate, load_text, train  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps (reduced budget; the full example uses 6000)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--sparsity", type=float, default=0.95)
    ap.add_argument("--prune-rounds", type=int, default=8, help="gradual pruning: rounds of pruning then retraining")
    ap.add_argument("--prune-steps", type=int, default=20, help="training steps after each pruning round")
    ap.add_argument("--ticks", type=int, default=300, help="characters of validation text run on the export")
    ap.add_argument("--out", default="examples/out/spinnaker2_egru_lm.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train_ids, val_ids, _, vocab = load_text()
    model = CharModel("egru", len(vocab), 16, args.hidden, 0.1, threshold_mean=0.3, zoneout=0.1)
    seconds, _, _ = train(model, train_ids, args.steps, args.seq, args.batch, 7e-3, 5.0, 0.2, 0.2)
    val = val_ids[:20_000]
    bpc_dense, _ = evaluate(model, val)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    MagnitudePruner(model.rnn, sparsity=args.sparsity).step()  # at once, for comparison
    bpc_one_shot, _ = evaluate(model, val)
    model.load_state_dict(dense)
    pruner = MagnitudePruner(model.rnn, sparsity=args.sparsity, steps=args.prune_rounds)
    for _ in range(args.prune_rounds):  # gradual: prune a little more, then retrain the kept weights
        pruner.step()
        seconds += train(model, train_ids, args.prune_steps, args.seq, args.batch, 3e-3, 5.0, 0.2)[0]
    pruner.step()  # the final masks: exactly the target sparsity
    bpc_pruned, activity_sparsity = evaluate(model, val)
    (node,) = model.rnn.to_nodes()
    graph = sf.Graph({"input": n.Input(shape=(16,)), "egru": node, "output": n.Output(shape=(args.hidden,))},
                     [("input", "egru"), ("egru", "output")], dt=1e-3).validate()
    tmp = Path(tempfile.mkdtemp(prefix="sf_s2_egru_"))
    try:
        report = sf.export(graph, target="spinnaker2", path=tmp / "lm", picture=False)
        prog = sf.load_export(tmp / "lm")
        with torch.no_grad():
            x = model.embed(torch.from_numpy(val[: args.ticks])).double().numpy()[:, None]
        got = prog.run(x)
        want = sf.simulate(graph, x, backend="numba-event", precision="float32")
        equal = bool(np.array_equal(got.output, want.output))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_pe = [sum(pe["bytes"].values()) for pe in report.sram if pe["model"] == "egru"]
    result = {"budget": f"{args.steps} steps, batch {args.batch}, seq {args.seq} (reduced; full example: 6000 x 32)",
              "hidden": args.hidden, "train_seconds": round(seconds, 1), "weight_hh_zero_fraction": round(float(np.mean(node.weight_hh == 0)), 4),
              "weight_ih_zero_fraction": round(float(np.mean(node.weight_ih == 0)), 4),
              "val_bpc_dense": round(bpc_dense, 4), "val_bpc_pruned_at_once": round(bpc_one_shot, 4),
              "pruning": f"{args.prune_rounds} rounds of {args.prune_steps} retraining steps", "val_bpc_pruned": round(bpc_pruned, 4), "val_activity_sparsity": round(activity_sparsity, 4),
              "pes": report.pes, "egru_pes": len(per_pe), "chips": report.chips, "paper_pes": 150,
              "data_per_egru_pe_kb_max": round(max(per_pe) / 1024, 1), "data_per_egru_pe_kb_mean": round(float(np.mean(per_pe)) / 1024, 1),
              "fits_96kb": max(per_pe) <= 96 * 1024, "ticks": args.ticks, "events": int(np.count_nonzero(got.output)),
              "events_equal_numba_float32": equal}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_out:
        Path(tmp_out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
