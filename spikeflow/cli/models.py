"""``spikeflow models``: the pretrained models shipped with spikeflow (task, test figures, size,
recipe); ``--retrain NAME`` retrains one from its recipe."""

from __future__ import annotations

HELP = "list the pretrained models (task, test accuracy, size, recipe); --retrain NAME retrains one"


def add_arguments(parser) -> None:
    parser.add_argument("--retrain", metavar="NAME", default=None, help="retrain this model with its recipe")
    parser.add_argument("--out", default=None, help="with --retrain: folder for the new file (default: replace the shipped one)")
    parser.add_argument("--data", default=None, help="with --retrain: DigitSaccades cache folder (default: the recipe's data.root)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    if args.retrain is not None:
        from spikeflow.models.retrain import retrain

        entry = retrain(args.retrain, out_dir=args.out, data_root=args.data, progress=not args.no_progress)
        print(f"{args.retrain}: {figures(entry)}, {entry['bytes'] / 1024:.0f} KiB, trained in {entry['train_seconds']:.0f} s")
        return 0
    print(models_table())
    return 0


def figures(entry: dict) -> str:
    """The test figures of an index entry in words: accuracy, and bits per character or mean steps."""
    m = entry["metrics"]
    text = f"test accuracy {100 * m['accuracy']:.2f}% ({m['correct']}/{m['n']})"
    if "bits_per_char" in m:
        text += f", {m['bits_per_char']:.3f} bits/char"
    if "mean_steps" in m:
        text += f", {m['mean_steps']:.2f} of {m['full_steps']} steps"
    return text


def models_table() -> str:
    """One row per shipped model: name, task, test figures, file size and recipe path."""
    from spikeflow.models.pretrained import pretrained_index, pretrained_names

    index = pretrained_index()
    rows = [("name", "task", "test figures", "size", "recipe")]
    for name in pretrained_names():
        entry = index.get(name)
        if entry is None:
            rows.append((name, "-", "not installed", "-", "-"))
            continue
        rows.append((name, entry["task"], figures(entry), f"{entry['bytes'] / 1024:.0f} KiB", entry["recipe"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["pretrained models (sf.models.pretrained(NAME)):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
