"""The deep-compression file: versioned header, per-tensor codebooks and Huffman tables,
bitstreams, and a CRC-32 over everything, checked before anything is decoded.

    offset  size  field
    0       4     magic b"MPDC"
    4       1     format version (2)
    5       4     body length N (little endian)
    9       N     body: varint M | zlib(JSON meta), M bytes | tensor table | blobs, in tensor order
    9+N     4     CRC-32 of bytes [0, 9+N)

The JSON meta holds what rebuilds the model (architecture, input spec). Tensor names and
shapes are not stored: the caller's `layout(meta)` derives them from the architecture, and the
table has one record per tensor in that order (why: on a 14k-parameter CNN, names and shapes
were a fifth of the file). A record is a flags byte, then for a shared tensor the varints
k, index_bits, count, index-stream bits, gap-stream bits and the Huffman code lengths of both
streams (4 bits each when all fit, else a byte each). A `shared` tensor's blobs are its
codebook (k float16 or float32), the Huffman-coded codebook indices and the Huffman-coded
index gaps (`relative.py`). A `dense` tensor (biases) is raw float16 or float32.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelpress.components.deep_compress import huffman, relative

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"MPDC"
VERSION = 2
_HEAD = struct.Struct("<4sBI")
# flags byte of a tensor record
_SHARED, _HALF, _BYTE_LENGTHS = 1, 2, 4
# Deep compression stores about 12 float32 weights per byte at best (~50x); a header declaring far more
# is crafted or corrupt, and decoding it would allocate whatever it asks for.
MAX_WEIGHTS_PER_BYTE = 1024

Layout = Callable[[dict[str, Any]], list[tuple[str, tuple[int, ...]]]]
"""meta -> [(tensor name, shape)] in file order; raises ValueError for meta it cannot use."""


class FormatError(ValueError):
    """The file is not a deep-compression file this version can decode; the message says why."""


@dataclass
class SharedTensor:
    """A weight tensor as k-means left it: codebook, one index per nonzero, positions."""

    shape: tuple[int, ...]
    codebook: np.ndarray  # float32 or float16, k entries
    positions: np.ndarray  # flat positions of the nonzeros, sorted
    indices: np.ndarray  # codebook index of each nonzero
    index_bits: int = 5

    def dense(self) -> np.ndarray:
        import numpy as np

        out = np.zeros(math.prod(self.shape), dtype=np.float32)
        out[self.positions] = self.codebook.astype(np.float32)[self.indices.astype(np.int64)]
        return out.reshape(self.shape)


@dataclass
class Bundle:
    meta: dict[str, Any]  # architecture, input spec, ...
    shared: dict[str, SharedTensor] = field(default_factory=dict)
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # tensor order: the order `layout(meta)` gives


def encode(bundle: Bundle) -> tuple[bytes, dict[str, int]]:
    """The file's bytes, and how many bytes each part takes (for the per-stage table)."""
    import numpy as np

    table, blobs = bytearray(), []
    sizes = {"codebooks": 0, "weight_indices": 0, "index_gaps": 0, "dense": 0, "meta": 0}
    for name in bundle.order:
        if name in bundle.shared:
            t = bundle.shared[name]
            k = len(t.codebook)
            gaps, symbols = relative.encode(t.positions, t.indices.astype(np.int64), t.index_bits, pad=k)
            w_len = huffman.code_lengths(symbols, k + 1)
            g_len = huffman.code_lengths(gaps, 2**t.index_bits)
            w_bytes, w_bits = huffman.encode(symbols, w_len)
            g_bytes, g_bits = huffman.encode(gaps, g_len)
            book = t.codebook.astype(_dtype(t.codebook)).tobytes()
            nibbles = max(w_len + g_len) < 16
            table.append(_SHARED | (_HALF if _dtype(t.codebook) == "<f2" else 0) | (0 if nibbles else _BYTE_LENGTHS))
            for v in (k, t.index_bits, len(symbols), w_bits, g_bits):
                table += _varint(v)
            table += _pack_lengths(w_len + g_len, nibbles)
            blobs += [book, w_bytes, g_bytes]
            sizes["codebooks"] += len(book)
            sizes["weight_indices"] += len(w_bytes)
            sizes["index_gaps"] += len(g_bytes)
        else:
            a = np.asarray(bundle.dense[name])
            dtype = _dtype(a)
            table.append(_HALF if dtype == "<f2" else 0)
            blobs.append(a.astype(dtype).tobytes())
            sizes["dense"] += a.astype(dtype).nbytes
    meta = zlib.compress(json.dumps(bundle.meta, separators=(",", ":")).encode(), 9)
    head_of_body = _varint(len(meta)) + meta + bytes(table)
    sizes["meta"] = len(head_of_body)
    body = head_of_body + b"".join(blobs)
    head = _HEAD.pack(MAGIC, VERSION, len(body)) + body
    data = head + struct.pack("<I", zlib.crc32(head))
    sizes["header_and_checksum"] = _HEAD.size + 4
    sizes["total"] = len(data)
    return data, sizes


def _dtype(a: np.ndarray) -> str:
    """float16 stays float16 (the caller rounded on purpose); anything else is stored as float32."""
    return "<f2" if a.dtype.name == "float16" else "<f4"


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _pack_lengths(lengths: Sequence[int], nibbles: bool) -> bytes:
    if not nibbles:
        return bytes(lengths)
    padded = list(lengths) + [0] * (len(lengths) % 2)
    return bytes((a << 4) | b for a, b in zip(padded[::2], padded[1::2]))


class _Reader:
    """Bounds-checked reads from the body; running past its end is a FormatError."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise FormatError("a field runs past the end of the body")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            (b,) = self.take(1)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise FormatError("a length field is longer than 64 bits")

    def lengths(self, n: int, byte_lengths: bool) -> list[int]:
        if byte_lengths:
            return list(self.take(n))
        raw = self.take((n + 1) // 2)
        return [x for b in raw for x in (b >> 4, b & 0x0F)][:n]


def decode(data: bytes, layout: Layout) -> Bundle:
    """Parse and check a file; raises FormatError, never returns a partly decoded model."""
    import numpy as np

    if len(data) < _HEAD.size + 4:
        raise FormatError(f"truncated: {len(data)} bytes is shorter than the header")
    magic, version, body_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a modelpress deep-compression file (magic {magic!r})")
    if version != VERSION:
        raise FormatError(f"unknown format version {version} (this modelpress reads version {VERSION})")
    end = _HEAD.size + body_len
    if len(data) != end + 4:
        raise FormatError(f"truncated or padded: header says {end + 4} bytes, file has {len(data)}")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise FormatError("checksum mismatch: the file is corrupt")
    r = _Reader(data, _HEAD.size, end)
    try:
        meta = json.loads(zlib.decompress(r.take(r.varint())))
        tensors = layout(meta)
        declared = sum(math.prod(shape) for _, shape in tensors)
        if declared > MAX_WEIGHTS_PER_BYTE * len(data):
            raise FormatError(f"the header declares {declared:,} weights, more than a {len(data):,}-byte file can "
                              f"hold ({MAX_WEIGHTS_PER_BYTE} per byte at most); refused before allocating them")
        records = []
        for name, shape in tensors:
            flags = r.take(1)[0]
            if not flags & _SHARED:
                records.append((name, shape, flags, None))
                continue
            k, index_bits, count, w_bits, g_bits = (r.varint() for _ in range(5))
            if index_bits > 16 or k > 2**16:
                raise FormatError(f"{name}: {k} centroids / {index_bits} index bits is beyond this format")
            lengths = r.lengths(k + 1 + 2**index_bits, bool(flags & _BYTE_LENGTHS))
            records.append((name, shape, flags, (k, index_bits, count, w_bits, g_bits, lengths)))
        bundle = Bundle(meta=meta)
        for name, shape, flags, rec in records:
            bundle.order.append(name)
            dtype = np.dtype("<f2" if flags & _HALF else "<f4")
            if rec is None:
                raw = r.take(dtype.itemsize * math.prod(shape))
                bundle.dense[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
                continue
            k, index_bits, count, w_bits, g_bits, lengths = rec
            book = np.frombuffer(r.take(dtype.itemsize * k), dtype=dtype).copy()
            symbols = huffman.decode(r.take((w_bits + 7) // 8), w_bits, lengths[: k + 1], count)
            gaps = huffman.decode(r.take((g_bits + 7) // 8), g_bits, lengths[k + 1 :], count)
            positions, indices = relative.decode(gaps, symbols, pad=k, size=math.prod(shape))
            bundle.shared[name] = SharedTensor(
                tuple(shape), book, np.asarray(positions, dtype=np.int64), np.asarray(indices, dtype=np.uint16),
                index_bits,
            )
        if r.pos != end:
            raise FormatError(f"{end - r.pos} unread bytes after the last tensor")
    except FormatError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, zlib.error) as exc:
        raise FormatError(f"malformed body ({exc})") from None
    return bundle
