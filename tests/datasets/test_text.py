"""The char-LM text helpers: the offline text, its fixed split, encoding and streams, bad input."""

import numpy as np
import pytest

from spikeflow.datasets.text import char_streams, encode_text, pydoc_topics_text, split_text
from spikeflow.errors import DataError


def test_split_is_contiguous_90_5_5():
    text = pydoc_topics_text()
    parts = split_text(text)
    assert "".join(parts[k] for k in ("train", "val", "test")) == text
    assert len(parts["train"]) == int(0.9 * len(text)) and abs(len(parts["val"]) - len(parts["test"])) <= 1


def test_encode_and_streams_against_a_loop():
    ids = encode_text("abcab", "cab")
    assert ids.tolist() == [1, 2, 0, 1, 2] and ids.dtype == np.int64
    streams = char_streams(np.arange(11), 2)  # 5 per stream, tail dropped
    assert streams.shape == (5, 2)
    for s in range(2):
        for t in range(5):
            assert streams[t, s] == s * 5 + t


def test_unknown_character_is_named_with_its_position():
    with pytest.raises(DataError, match=r"'z' at position 2"):
        encode_text("abz", "ab")
    with pytest.raises(DataError, match="repeats"):
        encode_text("ab", "aab")


def test_too_little_text_for_the_streams():
    with pytest.raises(DataError, match="cannot make 4 streams"):
        char_streams(np.arange(5), 4)
    with pytest.raises(DataError):
        char_streams(np.arange(5), 0)
