"""Draw docs/architecture.png: spikeflow's layers (bottom to top) and the path of one sample.

Run: ``.venv/bin/python docs/architecture_figure.py`` (rewrites docs/architecture.png).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# (layer, packages): the order of tests/test_layering.py, lowest first
LAYERS = [
    (0, ["errors", "_atomic", "plots"]),
    (1, ["ir"]),
    (2, ["io", "datasets"]),
    (3, ["backends (registry)", "backends/numba"]),
    (4, ["torch"]),
    (5, ["backends/torch, brian2", "targets"]),
    (6, ["train", "models", "convert"]),
    (7, ["continual", "exit"]),
    (8, ["cli", "demo"]),
]
# the path of one sample: (package, step label)
PATH = [
    ("datasets", "1 event file -> events\n(x, y, t, p), binned"),
    ("train", "2 Trainer.fit\n(one training loop)"),
    ("io", "3 sf.save / sf.load\n(HDF5)"),
    ("backends/numba", "4 sf.simulate\nnumba-event"),
    ("exit", "5 sf.exit.calibrate\n+ early-exit run"),
    ("targets", "6 sf.export /\nsf.load_export"),
]


def draw(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 7.5))
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.6, len(LAYERS) + 0.2)
    ax.axis("off")
    centres = {}
    for row, (layer, packages) in enumerate(LAYERS):
        ax.text(0.15, row + 0.4, f"layer {layer}", va="center", fontsize=9, color="0.35")
        width = 8.6 / len(packages)
        for i, name in enumerate(packages):
            x0 = 1.2 + i * width
            box = FancyBboxPatch((x0 + 0.08, row + 0.1), width - 0.16, 0.6, boxstyle="round,pad=0.02",
                                 fc="#dbe8f6" if layer not in (1,) else "#f6e7c8", ec="0.3", lw=0.8)
            ax.add_patch(box)
            ax.text(x0 + width / 2, row + 0.4, name, ha="center", va="center", fontsize=10)
            centres[name] = (x0 + width / 2, row + 0.4)
    previous = None
    for step, (name, label) in enumerate(PATH):
        x, y = centres[name]
        ax.text(x + 0.05, y - 0.38, label, ha="center", va="top", fontsize=7.5, color="#a0301c")
        if previous is not None:
            ax.add_patch(FancyArrowPatch(previous, (x, y), arrowstyle="-|>", mutation_scale=14, color="#c0392b",
                                         lw=1.6, connectionstyle="arc3,rad=0.18", alpha=0.85))
        previous = (x, y)
    ax.set_title("spikeflow: packages by layer (each imports only from its own layer or below)\n"
                 "red: the path of one sample from an event file to a hardware export", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(draw(Path(__file__).with_name("architecture.png")))
