"""Text for character-level language models, offline: CPython's reference-manual topics.

``pydoc_data.topics`` ships with CPython (no download). The topics are joined in sorted key order
and split 90/5/5 into contiguous train / validation / test parts, as in
``examples/egru_language_model.py``. The text differs a little between Python releases, so a
trained model stores its vocabulary, and the pretrained char-LM ships its test text.
"""

from __future__ import annotations

import numpy as np

from spikeflow.errors import DataError

SPLITS = ("train", "val", "test")


def pydoc_topics_text() -> str:
    """The reference-manual topics of this interpreter, joined in sorted key order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def split_text(text: str) -> dict[str, str]:
    """Contiguous 90/5/5 train / val / test parts of ``text``."""
    a, b = int(0.9 * len(text)), int(0.95 * len(text))
    return {"train": text[:a], "val": text[a:b], "test": text[b:]}


def encode_text(text: str, vocabulary: str) -> np.ndarray:
    """Character ids (int64) of ``text`` in ``vocabulary`` (a string of distinct characters).

    Raises:
        DataError: a character of ``text`` is not in the vocabulary (names it and its position).
    """
    lookup = {ch: i for i, ch in enumerate(vocabulary)}
    if len(lookup) != len(vocabulary):
        raise DataError("encode_text: the vocabulary repeats a character")
    try:
        return np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
    except KeyError as err:
        pos = next(i for i, ch in enumerate(text) if ch not in lookup)
        raise DataError(f"encode_text: character {err.args[0]!r} at position {pos} is not in the vocabulary") from None


def char_streams(ids: np.ndarray, streams: int) -> np.ndarray:
    """``ids`` cut into ``streams`` contiguous streams, time-major ``[T, streams]`` (the tail is dropped)."""
    if streams < 1 or len(ids) < 2 * streams:
        raise DataError(f"char_streams: {len(ids)} characters cannot make {streams} streams of at least 2")
    n = len(ids) // streams
    return np.ascontiguousarray(np.asarray(ids[: n * streams]).reshape(streams, n).T)
