"""The resistive-memory LSM study: random LIF reservoirs whose weights come from RRAM breakdown
statistics, run on the crossbar target, with only small digital readouts trained.

1. Accuracy: readout-only LSMs on DigitSaccades (images as events) and SpokenDigits (espeak-ng
   speech through a cochlea; also its harder setting ``condition=HARD``: 5 dB SNR white noise,
   unseen speakers), linear probe and MLP, software reservoir vs RRAM reservoir on the chip.
2. Device robustness (DigitSaccades): ideal device, the device model's defaults, 10% programming
   noise, 1% and 5% stuck cells, one day of drift; readouts trained against the sampled chip vs in
   software.
3. Zero-shot: audio -> image retrieval on 3 digit classes unseen in training (chance 33%) after
   training on the 7 others, with software and RRAM reservoirs; mean of 5 seeds, each drawing new
   reservoirs (and, for RRAM, new chips); two methods: similarity-to-seen-classes profiles (the
   default, chosen on pseudo-unseen splits of the seen digits) and CLIP-style projection heads.

Linear probes are the closed-form ridge readout; software reservoirs run through
:func:`reservoir_features` (the event-driven kernel), chips through their crossbar simulation.

Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/robustness.png``. Run:

    python examples/rram_lsm_study.py [--out out/rram_lsm] [--quick] [--zero-shot]

(``--zero-shot``: only part 3, writing ``OUT/zero_shot.{json,md}``.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import spikeflow as sf
from spikeflow._atomic import atomic_path
from spikeflow.datasets.spoken_digits import HARD
from spikeflow.models.lsm import binary_frames, reservoir, reservoir_features
from spikeflow.models.readout import features, retrieval_accuracy, train_contrastive, train_profiles, train_readout

IMAGE_STEPS, AUDIO_BINS = 50, 100
IMAGE_RESERVOIR = dict(size=200, p_in=0.2, p_rec=0.1, input_scale=2.0, weight_scale=1.0, decay=0.9, threshold=5.0)
AUDIO_RESERVOIR = dict(size=200, p_in=0.3, p_rec=0.1, input_scale=1.5, weight_scale=1.0, decay=0.97, threshold=5.3)
ROBUSTNESS = {
    "ideal": ("ideal", {}),
    "defaults": ("default", {}),
    "10% programming noise": ("default", {"prog_noise": 0.10}),
    "1% stuck cells": ("default", {"stuck_on": 0.005, "stuck_off": 0.005}),
    "5% stuck cells": ("default", {"stuck_on": 0.025, "stuck_off": 0.025}),
    "drift, 1 day": ("default", {"age_s": 86400.0}),
}
SEEN, UNSEEN = list(range(7)), [7, 8, 9]
ZERO_SHOT_SEEDS = (0, 1, 2, 3, 4)
ZERO_SHOT_METHODS = ("profiles", "clip heads")
DATA_NAMES = {"image": "DigitSaccades", "audio": "SpokenDigits", "audio_hard": "SpokenDigits, hard (5 dB SNR, unseen speakers)"}
BATCH = 512


def load_data(root: Path, subset: int | None, progress: bool, hard: bool = True) -> dict:
    """Binary image spikes ``[50, N, 578]`` and audio counts ``[100, N, 64]`` (clean and, if ``hard``, hard) with labels, per split."""
    out = {}
    for split in ("train", "test"):
        images = sf.datasets.DigitSaccades(root, train=split == "train", subset=subset, progress=progress)
        frames, y_img = images.frames(IMAGE_STEPS)
        audio = sf.datasets.SpokenDigits(root, train=split == "train", subset=subset, progress=progress)
        counts, y_aud = audio.frames(AUDIO_BINS, time_major=True)
        out[split] = {"image": (binary_frames(frames), y_img), "audio": (counts.astype(np.float64), y_aud)}
        if hard:
            noisy = sf.datasets.SpokenDigits(root, train=split == "train", subset=subset, progress=progress, condition=HARD)
            hard_counts, y_hard = noisy.frames(AUDIO_BINS, time_major=True)
            out[split]["audio_hard"] = (hard_counts.astype(np.float64), y_hard)
    return out


def simulate_spikes(run, x: np.ndarray) -> np.ndarray:
    """Reservoir spikes ``[T, N, size]`` of ``run(x_batch)``, in batches."""
    return np.concatenate([run(x[:, i : i + BATCH]) for i in range(0, x.shape[1], BATCH)], axis=1)


def on_chip(graph, folder: Path, device="default", seed: int = 0, **overrides):
    """Export ``graph`` to the RRAM target (one sampled chip) and return a runner of its crossbar simulation."""
    age = overrides.pop("age_s", None)
    sf.export(graph, target="rram-lsm", path=folder, device=device, device_overrides=overrides, seed=seed)
    prog = sf.load_export(folder)
    return lambda x: prog.run(x, record=["lif"], age_s=age).spikes["lif"]


def feats(run, data, modality) -> tuple:
    """Train and test features of a reservoir: ``run`` is a graph (software, :func:`reservoir_features`) or a chip runner."""
    xtr, ytr = data["train"][modality]
    xte, yte = data["test"][modality]
    if isinstance(run, sf.Graph):
        return reservoir_features(run, xtr, windows=5), ytr, reservoir_features(run, xte, windows=5), yte
    return features(simulate_spikes(run, xtr), windows=5), ytr, features(simulate_spikes(run, xte), windows=5), yte


def accuracy_rows(name, f) -> dict:
    ftr, ytr, fte, yte = f
    lin = train_readout(ftr, ytr)
    mlp = train_readout(ftr, ytr, hidden=128, epochs=60, dropout=0.2)
    return {"case": name, "linear": lin.accuracy(fte, yte), "mlp": mlp.accuracy(fte, yte), "linear_train_s": lin.train_seconds}


def zero_shot(features_of, seeds=ZERO_SHOT_SEEDS) -> dict:
    """Audio -> image retrieval of test audio against test images, trained on SEEN classes (train
    split), scored on SEEN (7-way) and UNSEEN (3-way); for each of ``seeds`` (``features_of(seed)``
    gives the (image, audio) features of that seed's reservoirs) and two methods:

    - "profiles" (the default, chosen on pseudo-unseen splits of the seen digits, docs/rram.md):
      each sample's similarities to the seen classes' mean features within its own modality,
      compared across modalities (:func:`train_profiles`);
    - "clip heads": linear projection heads (dimension 64, as in the paper) trained with the
      CLIP-style loss, seeded like the reservoirs.
    """
    out = {m: {"seen": [], "unseen": []} for m in ZERO_SHOT_METHODS}
    for seed in seeds:
        (fi_tr, yi_tr, fi_te, yi_te), (fa_tr, ya_tr, fa_te, ya_te) = features_of(seed)
        s_i, s_a = np.isin(yi_tr, SEEN), np.isin(ya_tr, SEEN)
        pairs = {"profiles": train_profiles(fa_tr[s_a], ya_tr[s_a], fi_tr[s_i], yi_tr[s_i]),
                 "clip heads": train_contrastive(fa_tr[s_a], ya_tr[s_a], fi_tr[s_i], yi_tr[s_i], dim=64, epochs=400, seed=seed)}
        for method, pair in pairs.items():
            for name, classes in (("seen", SEEN), ("unseen", UNSEEN)):
                g = np.isin(yi_te, classes)
                out[method][name].append(retrieval_accuracy(pair, fa_te, ya_te, fi_te[g], yi_te[g], classes=classes))
    return {m: {"seen (7-way, chance 14%)": float(np.mean(v["seen"])), "unseen (3-way, chance 33%)": float(np.mean(v["unseen"])),
                "seen per seed": v["seen"], "unseen per seed": v["unseen"], "seeds": list(seeds)} for m, v in out.items()}


def zero_shot_features(kind: str, data: dict, out: Path, first: tuple | None = None):
    """``features_of(seed)`` for :func:`zero_shot`: seed s draws the image reservoir of seed 2s and
    the audio reservoir of seed 2s + 1 (for RRAM, device weights and a chip sampled with seed s);
    ``first`` reuses already computed seed-0 features."""
    n_img, n_aud = data["train"]["image"][0].shape[2], data["train"]["audio"][0].shape[2]

    def features_of(seed):
        if seed == 0 and first is not None:
            return first
        pair = []
        for modality, config, n_in in (("image", IMAGE_RESERVOIR, n_img), ("audio", AUDIO_RESERVOIR, n_aud)):
            g = reservoir(n_in, **config, weights="software" if kind == "software" else "device", seed=2 * seed + (modality == "audio"))
            pair.append(feats(g if kind == "software" else on_chip(g, out / f"chip_{modality}_{seed}", seed=seed), data, modality))
        return pair

    return features_of


def main(out: Path, root: Path = Path("data"), quick: bool = False, progress: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(root, 100 if quick else None, progress)
    n_img, n_aud = data["train"]["image"][0].shape[2], data["train"]["audio"][0].shape[2]
    graphs = {
        ("image", "software"): reservoir(n_img, **IMAGE_RESERVOIR, weights="software", seed=0),
        ("image", "rram"): reservoir(n_img, **IMAGE_RESERVOIR, weights="device", seed=0),
        ("audio", "software"): reservoir(n_aud, **AUDIO_RESERVOIR, weights="software", seed=1),
        ("audio", "rram"): reservoir(n_aud, **AUDIO_RESERVOIR, weights="device", seed=1),
    }
    graphs["audio_hard", "software"], graphs["audio_hard", "rram"] = graphs["audio", "software"], graphs["audio", "rram"]
    results: dict = {"accuracy": [], "robustness": [], "zero_shot": {}}
    f = {}
    start = time.perf_counter()
    for (modality, kind), g in graphs.items():
        run = g if kind == "software" else on_chip(g, out / f"chip_{modality}")
        f[modality, kind] = feats(run, data, modality)
        label = {"software": "software reservoir (float32)", "rram": "RRAM reservoir on the chip (device defaults)"}[kind]
        results["accuracy"].append({"data": DATA_NAMES[modality], **accuracy_rows(label, f[modality, kind])})
        print(results["accuracy"][-1], flush=True)
    # robustness: the software-weight image reservoir on chips of each condition; readouts trained
    # against that chip, or in software (on the float64 reservoir) and then run on the chip
    ftr_sw, ytr, _, yte = f["image", "software"]
    sw_readout = train_readout(ftr_sw, ytr)
    for name, (device, overrides) in ROBUSTNESS.items():
        fc = feats(on_chip(graphs["image", "software"], out / "chip_robustness", device, **overrides), data, "image")
        chip_readout = train_readout(fc[0], fc[1])
        results["robustness"].append({"device": name, "readout trained on the chip": chip_readout.accuracy(fc[2], fc[3]),
                                      "readout trained in software": sw_readout.accuracy(fc[2], fc[3])})
        print(results["robustness"][-1], flush=True)
    for kind in ("software", "rram"):
        results["zero_shot"][kind] = zero_shot(zero_shot_features(kind, data, out, (f["image", kind], f["audio", kind])))
        print(kind, results["zero_shot"][kind], flush=True)
    results["seconds"] = time.perf_counter() - start
    results["quick"] = quick
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(results))
    picture(results, out / "robustness.png")
    return results


def markdown(r: dict) -> str:
    lines = ["| data | reservoir | linear probe | MLP |", "|---|---|---|---|"]
    lines += [f"| {a['data']} | {a['case']} | {a['linear']:.1%} | {a['mlp']:.1%} |" for a in r["accuracy"]]
    lines += ["", "| device (DigitSaccades, linear probe) | readout trained on the chip | readout trained in software |", "|---|---|---|"]
    lines += [f"| {b['device']} | {b['readout trained on the chip']:.1%} | {b['readout trained in software']:.1%} |" for b in r["robustness"]]
    return "\n".join(lines) + "\n\n" + zero_shot_markdown(r["zero_shot"])


def zero_shot_markdown(z: dict) -> str:
    lines = ["| zero-shot audio -> image | method | seen 0-6 (7-way, chance 14%) | unseen 7-9 (3-way, chance 33%) | unseen, per seed |",
             "|---|---|---|---|---|"]
    for kind, by_method in z.items():
        for method, v in by_method.items():
            per_seed = " / ".join(f"{a:.1%}" for a in v["unseen per seed"])
            lines.append(f"| {kind} reservoirs | {method} | {v['seen (7-way, chance 14%)']:.1%} | {v['unseen (3-way, chance 33%)']:.1%} | {per_seed} |")
    return "\n".join(lines) + "\n"


def zero_shot_study(out: Path, root: Path = Path("data"), seeds=ZERO_SHOT_SEEDS, progress: bool = True) -> dict:
    """Only part 3 (zero-shot, software and RRAM reservoirs, every seed drawing new reservoirs):
    writes ``OUT/zero_shot.{json,md}``."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(root, None, progress, hard=False)
    start = time.perf_counter()
    results = {}
    for kind in ("software", "rram"):
        results[kind] = zero_shot(zero_shot_features(kind, data, out), seeds)
        print(kind, results[kind], f"{time.perf_counter() - start:.0f} s", flush=True)
    with atomic_path(out / "zero_shot.json") as tmp:
        tmp.write_text(json.dumps({"zero_shot": results, "seconds": time.perf_counter() - start}, indent=1))
    with atomic_path(out / "zero_shot.md") as tmp:
        tmp.write_text(zero_shot_markdown(results))
    return results


def picture(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b["device"] for b in r["robustness"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(x - 0.2, [b["readout trained on the chip"] for b in r["robustness"]], 0.4, label="readout trained on the chip")
    ax.bar(x + 0.2, [b["readout trained in software"] for b in r["robustness"]], 0.4, label="readout trained in software")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("DigitSaccades LSM on the RRAM crossbar")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=2, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/rram_lsm"), help="output folder")
    parser.add_argument("--data", type=Path, default=Path("data"), help="data set cache folder")
    parser.add_argument("--quick", action="store_true", help="100 samples per split (a smoke run)")
    parser.add_argument("--zero-shot", action="store_true", help="only part 3, the zero-shot study")
    args = parser.parse_args()
    if args.zero_shot:
        print(zero_shot_markdown(zero_shot_study(args.out, args.data)))
    else:
        print(markdown(main(args.out, args.data, args.quick)))
