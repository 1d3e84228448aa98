"""Slow, obvious reference of the similarity-to-seen-classes profiles
(:func:`spikeflow.models.readout.train_profiles`): loops over samples, classes and features."""

import math

import numpy as np


def profiles(x_train, y_train, classes, x, standardise=False):
    """Rows of ``x``: for each class in ``classes``, the cosine between the sample and the class
    mean (both centred by the mean of the training samples of ``classes``, optionally divided by
    their per-feature standard deviation + 1e-3), then z-scored across the classes."""
    rows = [list(map(float, r)) for r, label in zip(x_train, y_train) if label in set(classes)]
    labels = [label for label in y_train if label in set(classes)]
    n, f = len(rows), len(rows[0])
    centre = [sum(r[j] for r in rows) / n for j in range(f)]
    scale = [math.sqrt(sum((r[j] - centre[j]) ** 2 for r in rows) / n) + 1e-3 if standardise else 1.0 for j in range(f)]

    def z(r):
        return [(r[j] - centre[j]) / scale[j] for j in range(f)]

    means = []
    for c in classes:
        members = [z(r) for r, label in zip(rows, labels) if label == c]
        means.append([sum(m[j] for m in members) / len(members) for j in range(f)])

    def cosine(u, v):
        return sum(a * b for a, b in zip(u, v)) / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    out = []
    for r in x:
        sims = [cosine(z(list(map(float, r))), m) for m in means]
        mu = sum(sims) / len(sims)
        sd = math.sqrt(sum((s - mu) ** 2 for s in sims) / len(sims))
        out.append([(s - mu) / sd for s in sims])
    return np.array(out)
