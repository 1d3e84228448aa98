"""How the zero-shot method of ``rram_lsm_study.py`` was chosen without looking at digits 7-9.

Pseudo-unseen protocol on the seen digits 0-6 only: train on 4 of them and retrieve the other 3
(3-way, chance 33%; 10 fixed splits), and train on 5 and retrieve 2 (2-way, chance 50%; 11
splits); test audio queries against test-image class prototypes, as in the study; software
reservoirs of 5 seeds (the study's seeds: image reservoir 2s, audio 2s + 1; features = spike
counts in 5 windows + trace). Digits 7-9 are dropped before anything is computed.

Also prints the diagnostic behind the result: the correlation, over the 21 pairs of seen digits,
between the two modalities' class-similarity matrices (cosine of centred class means), for the
reservoir features and for the raw inputs (image event counts per pixel, audio counts in 10 bins).

    python examples/zero_shot_selection.py [--data data] [--seeds 5] [--no-clip]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

import rram_lsm_study as study
from spikeflow.models.lsm import reservoir
from spikeflow.models.readout import retrieval_accuracy, train_contrastive, train_profiles

_rng = np.random.default_rng(123)
SPLITS_4_3 = list(dict.fromkeys(tuple(sorted(_rng.choice(7, 3, replace=False).tolist())) for _ in range(40)))[:10]
SPLITS_5_2 = list(itertools.combinations(range(7), 2))[::2]
METHODS = {
    "profiles (centred features)": lambda xa, ya, xb, yb, seed: train_profiles(xa, ya, xb, yb),
    "profiles (standardised features)": lambda xa, ya, xb, yb, seed: train_profiles(xa, ya, xb, yb, standardise=True),
    "clip heads (dim 64, 400 steps)": lambda xa, ya, xb, yb, seed: train_contrastive(xa, ya, xb, yb, dim=64, epochs=400, seed=seed),
}


def seen_only(data: dict) -> dict:
    """The study's data with every sample of digits 7-9 removed."""
    out = {}
    for split, mods in data.items():
        out[split] = {}
        for m, (x, y) in mods.items():
            keep = np.isin(y, study.SEEN)
            out[split][m] = (x[:, keep], y[keep])
    return out


def similarity_matrix(x, y) -> np.ndarray:
    z = x - x.mean(0)
    mu = np.stack([z[y == c].mean(0) for c in study.SEEN])
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    return mu @ mu.T


def geometry_correlation(xa, ya, xb, yb) -> float:
    iu = np.triu_indices(len(study.SEEN), 1)
    return float(np.corrcoef(similarity_matrix(xa, ya)[iu], similarity_matrix(xb, yb)[iu])[0, 1])


def main(root, n_seeds: int, clip: bool) -> dict:
    data = seen_only(study.load_data(root, None, progress=True, hard=False))
    n_img, n_aud = data["train"]["image"][0].shape[2], data["train"]["audio"][0].shape[2]
    methods = {k: v for k, v in METHODS.items() if clip or not k.startswith("clip")}
    scores = {(m, p): [] for m in methods for p in ("4->3", "5->2")}
    by_split = {(m, held): [] for m in methods for held in SPLITS_4_3}
    geometry = []
    for seed in range(n_seeds):
        fi_tr, yi_tr, fi_te, yi_te = study.feats(reservoir(n_img, **study.IMAGE_RESERVOIR, seed=2 * seed), data, "image")
        fa_tr, ya_tr, fa_te, ya_te = study.feats(reservoir(n_aud, **study.AUDIO_RESERVOIR, seed=2 * seed + 1), data, "audio")
        geometry.append(geometry_correlation(fa_tr, ya_tr, fi_tr, yi_tr))
        for protocol, splits in (("4->3", SPLITS_4_3), ("5->2", SPLITS_5_2)):
            for m, make in methods.items():
                accs = []
                for held in splits:
                    ti, ta = ~np.isin(yi_tr, held), ~np.isin(ya_tr, held)
                    pair = make(fa_tr[ta], ya_tr[ta], fi_tr[ti], yi_tr[ti], seed)
                    g = np.isin(yi_te, held)
                    accs.append(retrieval_accuracy(pair, fa_te, ya_te, fi_te[g], yi_te[g], classes=list(held)))
                    if protocol == "4->3":
                        by_split[m, held].append(accs[-1])
                scores[m, protocol].append(float(np.mean(accs)))
                print(f"seed {seed} {protocol} {m}: {scores[m, protocol][-1]:.1%}", flush=True)
    raw_img = data["train"]["image"][0].sum(0)
    a = data["train"]["audio"][0]
    raw_aud = a.reshape(10, a.shape[0] // 10, *a.shape[1:]).sum(1).transpose(1, 0, 2).reshape(a.shape[1], -1)
    raw = geometry_correlation(raw_aud, data["train"]["audio"][1], raw_img, data["train"]["image"][1])
    print("\n| method | train 4 / retrieve 3 (chance 33%) | per seed | train 5 / retrieve 2 (chance 50%) | per seed |")
    print("|---|---|---|---|---|")
    for m in methods:
        a, b = scores[m, "4->3"], scores[m, "5->2"]
        print(f"| {m} | {np.mean(a):.1%} | {' / '.join(f'{v:.1%}' for v in a)} | {np.mean(b):.1%} | {' / '.join(f'{v:.1%}' for v in b)} |")
    print("\n| method | " + " | ".join("held out " + "".join(map(str, h)) for h in SPLITS_4_3) + " |")
    print("|---|" + "---|" * len(SPLITS_4_3))
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{np.mean(by_split[m, h]):.0%}" for h in SPLITS_4_3) + " |")
    print(f"\nclass-geometry correlation audio vs image (21 pairs of seen digits): reservoir features "
          f"{' / '.join(f'{g:.2f}' for g in geometry)}; raw inputs {raw:.2f}")
    return {"scores": {f"{m} {p}": v for (m, p), v in scores.items()}, "geometry": geometry, "raw_geometry": raw}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="data set cache folder")
    parser.add_argument("--seeds", type=int, default=5, help="reservoir seeds")
    parser.add_argument("--no-clip", action="store_true", help="skip the (slower) projection heads")
    args = parser.parse_args()
    main(args.data, args.seeds, not args.no_clip)
