"""Deep-compression building blocks: Huffman, k-means sharing, relative indexing, the file format."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from modelpress.components.deep_compress import container, huffman, relative
from modelpress.components.deep_compress.kmeans import kmeans_1d


def test_huffman_round_trip_and_near_entropy():
    rng = np.random.default_rng(0)
    symbols = rng.choice(8, size=5000, p=[0.4, 0.2, 0.1, 0.1, 0.08, 0.06, 0.04, 0.02]).tolist()
    lengths = huffman.code_lengths(symbols, 8)
    data, nbits = huffman.encode(symbols, lengths)
    assert huffman.decode(data, nbits, lengths, len(symbols)) == symbols
    counts = Counter(symbols)
    entropy = -sum(c / len(symbols) * math.log2(c / len(symbols)) for c in counts.values())
    assert entropy <= nbits / len(symbols) < entropy + 1  # Huffman's bound
    assert huffman.code_lengths([3, 3, 3], 5) == [0, 0, 0, 1, 0]  # one symbol still gets a code


def test_huffman_rejects_a_short_stream():
    lengths = huffman.code_lengths([0, 1, 2, 2], 3)
    data, nbits = huffman.encode([0, 1, 2, 2], lengths)
    with pytest.raises(ValueError):
        huffman.decode(data, nbits - 1, lengths, 4)


def test_kmeans_linear_init_keeps_the_extremes():
    values = np.concatenate([np.random.default_rng(0).normal(0, 0.05, 1000), [0.9, -0.8]]).astype(np.float32)
    book, idx = kmeans_1d(values, bits=4)
    assert len(book) == 16 and np.all(np.diff(book) > 0)
    assert book[-1] == pytest.approx(0.9, abs=1e-6) and book[0] == pytest.approx(-0.8, abs=1e-6)
    assert np.abs(book[idx] - values).mean() < 0.02  # linear init spends centroids on the tails, by design
    small, sidx = kmeans_1d(np.array([0.1, 0.2], dtype=np.float32), bits=8)
    assert list(small) == pytest.approx([0.1, 0.2]) and list(sidx) == [0, 1]


def test_relative_indexing_pads_long_gaps():
    positions = np.array([0, 3, 40, 41])
    gaps, symbols = relative.encode(positions, np.array([1, 2, 3, 0]), index_bits=3, pad=9)
    assert symbols.count(9) == 4  # 3 -> 40 is a gap of 37 > 8: four fillers of 8
    assert max(gaps) <= 7
    back, kept = relative.decode(gaps, symbols, pad=9, size=42)
    assert back == [0, 3, 40, 41] and kept == [1, 2, 3, 0]


def _bundle() -> container.Bundle:
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, (30, 20)).astype(np.float32)
    w[np.abs(w) < 0.12] = 0
    positions = np.flatnonzero(w)
    book, idx = kmeans_1d(w.ravel()[positions], bits=5)
    shared = container.SharedTensor((30, 20), book, positions, idx, index_bits=4)
    return container.Bundle(meta={"architecture": {"family": "mlp"}}, shared={"fc.weight": shared},
                            dense={"fc.bias": rng.normal(size=30).astype(np.float32)},
                            order=["fc.weight", "fc.bias"])


def _layout(meta: dict) -> list[tuple[str, tuple[int, ...]]]:
    """What the decoder derives from the architecture: names and shapes are not in the file."""
    return [("fc.weight", (30, 20)), ("fc.bias", (30,))]


def test_file_round_trip_is_exact():
    bundle = _bundle()
    data, sizes = container.encode(bundle)
    assert sizes["total"] == len(data)
    back = container.decode(data, _layout)
    assert back.meta == bundle.meta and back.order == bundle.order
    assert np.array_equal(back.shared["fc.weight"].dense(), bundle.shared["fc.weight"].dense())
    assert back.shared["fc.weight"].dense().tobytes() == bundle.shared["fc.weight"].dense().tobytes()
    assert np.array_equal(back.dense["fc.bias"], bundle.dense["fc.bias"])


def test_any_flipped_bit_fails_the_checksum():
    data, _ = container.encode(_bundle())
    for byte in (0, 5, 20, len(data) // 2, len(data) - 5):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[byte] ^= 1 << bit
            with pytest.raises(container.FormatError):
                container.decode(bytes(bad), _layout)
    bad = bytearray(data)
    bad[len(data) // 2] ^= 1
    with pytest.raises(container.FormatError, match="checksum mismatch"):
        container.decode(bytes(bad), _layout)


def test_truncated_and_unknown_version_are_refused():
    data, _ = container.encode(_bundle())
    for cut in (3, 12, len(data) // 2, len(data) - 1):
        with pytest.raises(container.FormatError, match="truncated"):
            container.decode(data[:cut], _layout)
    for version in (1, container.VERSION + 1):  # an older or a newer writer
        other = bytearray(data)
        other[4] = version
        with pytest.raises(container.FormatError, match=f"unknown format version {version}"):
            container.decode(bytes(other), _layout)


def test_an_empty_layer_still_encodes():
    book, idx = kmeans_1d(np.zeros(0, dtype=np.float32), bits=4)
    shared = container.SharedTensor((3, 4), book, np.zeros(0, dtype=np.int64), idx, index_bits=3)
    bundle = container.Bundle(meta={}, shared={"w": shared}, order=["w"])
    back = container.decode(container.encode(bundle)[0], lambda meta: [("w", (3, 4))])
    assert not back.shared["w"].dense().any()


def test_long_huffman_codes_are_stored_as_bytes():
    # Fibonacci-like counts give a maximally skewed tree: codes longer than 15 bits
    symbols = [s for s, n in enumerate([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584])
               for _ in range(n)]
    assert max(huffman.code_lengths(symbols, 32)) > 15
    positions = np.arange(len(symbols)) * 2
    book = np.linspace(-1, 1, 32).astype(np.float32)
    shared = container.SharedTensor((len(symbols) * 2,), book, positions, np.array(symbols), index_bits=2)
    bundle = container.Bundle(meta={}, shared={"w": shared}, order=["w"])
    back = container.decode(container.encode(bundle)[0], lambda meta: [("w", (len(symbols) * 2,))])
    assert np.array_equal(back.shared["w"].dense(), shared.dense())


def test_names_and_shapes_come_from_the_layout_not_the_file():
    data, _ = container.encode(_bundle())
    with pytest.raises(container.FormatError, match="malformed|past the end|unread"):
        container.decode(data, lambda meta: [("fc.weight", (30, 20))])  # one tensor too few
    with pytest.raises(container.FormatError, match="malformed"):
        container.decode(data, lambda meta: (_ for _ in ()).throw(ValueError("unknown family")))
