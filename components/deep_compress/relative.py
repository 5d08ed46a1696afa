"""Relative indexing of a sparse tensor's nonzero positions (Han et al. 2016, section 3).

Each nonzero is stored as (gap, symbol): gap = distance from the previous stored
position, in [1, 2^index_bits], written as gap - 1. A longer gap gets filler entries
of the maximal gap carrying `pad`, a symbol that is not a codebook index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def encode(positions: np.ndarray, symbols: np.ndarray, index_bits: int, pad: int) -> tuple[list[int], list[int]]:
    """(gap - 1 per entry, symbol per entry) for sorted flat `positions` and their `symbols`."""
    max_gap = 2**index_bits
    gaps: list[int] = []
    out: list[int] = []
    prev = -1
    for p, s in zip(positions.tolist(), symbols.tolist()):
        d = p - prev
        while d > max_gap:
            gaps.append(max_gap - 1)
            out.append(pad)
            prev += max_gap
            d = p - prev
        gaps.append(d - 1)
        out.append(s)
        prev = p
    return gaps, out


def decode(gaps: list[int], symbols: list[int], pad: int, size: int) -> tuple[list[int], list[int]]:
    """Back to (positions, symbols) without the fillers; positions must fall inside `size`."""
    positions, kept = [], []
    pos = -1
    for g, s in zip(gaps, symbols):
        pos += g + 1
        if s != pad:
            positions.append(pos)
            kept.append(s)
    if positions and positions[-1] >= size:
        raise ValueError(f"position {positions[-1]} is outside a tensor of {size} entries")
    return positions, kept
