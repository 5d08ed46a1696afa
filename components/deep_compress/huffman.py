"""Canonical Huffman coding of small integer alphabets (codebook indices, index gaps).

Canonical codes are fully described by one code length per symbol, so the file stores
lengths, not trees: a symbol's code is the next integer at its length, in (length,
symbol) order. Decoding walks lengths upward, comparing against the first code of
each length (the classic canonical-Huffman decoder, no tree needed).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence

MAX_CODE_LENGTH = 32


def code_lengths(symbols: Sequence[int], alphabet: int) -> list[int]:
    """Huffman code length of each symbol in range(alphabet); 0 for symbols that never occur."""
    counts = Counter(symbols)
    lengths = [0] * alphabet
    present = [s for s in range(alphabet) if counts[s]]
    if len(present) == 1:
        lengths[present[0]] = 1
        return lengths
    # heap of (weight, tiebreak, symbols under this node)
    heap = [(counts[s], s, [s]) for s in present]
    heapq.heapify(heap)
    tiebreak = alphabet
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, tiebreak, s1 + s2))
        tiebreak += 1
    if max(lengths) > MAX_CODE_LENGTH:  # needs 2^32 symbols to happen; refuse rather than mis-code
        raise ValueError(f"Huffman code longer than {MAX_CODE_LENGTH} bits")
    return lengths


def _canonical(lengths: Sequence[int]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length)."""
    codes: dict[int, tuple[int, int]] = {}
    code, prev = 0, 0
    for length, symbol in sorted((n, s) for s, n in enumerate(lengths) if n):
        code <<= length - prev
        codes[symbol] = (code, length)
        code += 1
        prev = length
    return codes


def encode(symbols: Sequence[int], lengths: Sequence[int]) -> tuple[bytes, int]:
    """The bitstream (most significant bit first, zero-padded to a byte) and its length in bits."""
    codes = _canonical(lengths)
    acc, nbits = 0, 0
    for s in symbols:
        code, length = codes[s]
        acc = (acc << length) | code
        nbits += length
    pad = (-nbits) % 8
    return (acc << pad).to_bytes((nbits + pad) // 8, "big"), nbits


def decode(data: bytes, nbits: int, lengths: Sequence[int], count: int) -> list[int]:
    """`count` symbols from the first `nbits` bits of `data`; raises ValueError on a bad stream."""
    if len(data) * 8 < nbits:
        raise ValueError(f"bitstream has {len(data) * 8} bits, header says {nbits}")
    by_length: dict[int, list[int]] = {}
    for symbol, n in sorted(enumerate(lengths), key=lambda sn: (sn[1], sn[0])):
        if n:
            by_length.setdefault(n, []).append(symbol)
    first: dict[int, int] = {}
    code = 0
    prev = 0
    for n in sorted(by_length):
        code <<= n - prev
        first[n] = code
        code += len(by_length[n])
        prev = n
    value = int.from_bytes(data, "big")
    total = len(data) * 8
    out: list[int] = []
    pos = 0
    max_len = max(by_length) if by_length else 0
    while len(out) < count:
        code, n = 0, 0
        while True:
            if pos >= nbits or n >= max_len:
                raise ValueError("bitstream ends inside a code or holds an invalid code")
            code = (code << 1) | ((value >> (total - 1 - pos)) & 1)
            pos += 1
            n += 1
            if n in first and 0 <= code - first[n] < len(by_length[n]):
                out.append(by_length[n][code - first[n]])
                break
    if pos != nbits:
        raise ValueError(f"bitstream holds {nbits - pos} bits after the last symbol")
    return out
