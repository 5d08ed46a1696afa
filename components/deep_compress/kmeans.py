"""Per-layer weight sharing: 1-D k-means over a layer's nonzero weights.

Centroids start linearly spaced between the smallest and largest weight: Han et al.
(2016) found linear initialisation keeps the rare large weights, which matter most,
better than random or density-based starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def kmeans_1d(values: np.ndarray, bits: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(codebook float32 of at most 2^bits entries, index per value as uint16)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == 0:  # a layer pruned away entirely: one unused centroid keeps the format uniform
        return np.zeros(1, dtype=np.float32), np.zeros(0, dtype=np.uint16)
    k = int(min(2**bits, max(1, np.unique(values).size)))
    centroids = np.linspace(values.min(), values.max(), k, dtype=np.float64)
    idx = np.zeros(values.size, dtype=np.int64)
    for _ in range(iterations):
        # nearest centroid: centroids are sorted, so search the midpoints
        mids = (centroids[1:] + centroids[:-1]) / 2
        idx = np.searchsorted(mids, values)
        sums = np.bincount(idx, weights=values, minlength=k)
        counts = np.bincount(idx, minlength=k)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = np.sort(moved)
    mids = (centroids[1:] + centroids[:-1]) / 2
    idx = np.searchsorted(mids, values)
    return centroids.astype(np.float32), idx.astype(np.uint16)
