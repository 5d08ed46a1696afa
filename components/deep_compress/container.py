"""The deep-compression file: versioned header, per-tensor codebooks and Huffman tables,
bitstreams, and a CRC-32 over everything, checked before anything is decoded.

    offset  size  field
    0       4     magic b"MPDC"
    4       1     format version (1)
    5       4     body length N (little endian)
    9       N     body: u32 meta length M | zlib(JSON meta, M bytes) | blobs, in tensor order
    9+N     4     CRC-32 of bytes [0, 9+N)

Meta JSON: the model's architecture and input spec, and per tensor its name, shape and
kind. A `shared` tensor's blobs are its codebook (k float16 or float32), the Huffman-coded codebook
indices and the Huffman-coded index gaps (`relative.py`); the code lengths of both
Huffman tables are in the meta. A `dense` tensor (biases, norms) is raw float16 or float32.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelpress.components.deep_compress import huffman, relative

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"MPDC"
VERSION = 1
_HEAD = struct.Struct("<4sBI")


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
    order: list[str] = field(default_factory=list)  # tensor order (state_dict order)


def encode(bundle: Bundle) -> tuple[bytes, dict[str, int]]:
    """The file's bytes, and how many bytes each part takes (for the per-stage table)."""
    import numpy as np

    tensors, blobs = [], []
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
            book_dtype = _dtype(t.codebook)
            book = t.codebook.astype(book_dtype).tobytes()
            blobs += [book, w_bytes, g_bytes]
            sizes["codebooks"] += len(book)
            sizes["weight_indices"] += len(w_bytes)
            sizes["index_gaps"] += len(g_bytes)
            tensors.append({"name": name, "shape": list(t.shape), "kind": "shared", "k": k, "dtype": book_dtype,
                            "index_bits": t.index_bits, "count": len(symbols),
                            "w_lengths": w_len, "w_bits": w_bits, "g_lengths": g_len, "g_bits": g_bits})
        else:
            a = np.asarray(bundle.dense[name])
            dtype = _dtype(a)
            blobs.append(a.astype(dtype).tobytes())
            sizes["dense"] += a.astype(dtype).nbytes
            tensors.append({"name": name, "shape": list(a.shape), "kind": "dense", "dtype": dtype})
    meta = zlib.compress(json.dumps({**bundle.meta, "tensors": tensors}, separators=(",", ":")).encode(), 9)
    sizes["meta"] = len(meta) + 4
    body = struct.pack("<I", len(meta)) + meta + b"".join(blobs)
    head = _HEAD.pack(MAGIC, VERSION, len(body)) + body
    data = head + struct.pack("<I", zlib.crc32(head))
    sizes["header_and_checksum"] = _HEAD.size + 4
    sizes["total"] = len(data)
    return data, sizes


def _dtype(a: np.ndarray) -> str:
    """float16 stays float16 (the caller rounded on purpose); anything else is stored as float32."""
    return "<f2" if a.dtype.name == "float16" else "<f4"


def decode(data: bytes) -> Bundle:
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
    try:
        (meta_len,) = struct.unpack_from("<I", data, _HEAD.size)
        pos = _HEAD.size + 4
        meta = json.loads(zlib.decompress(data[pos : pos + meta_len]))
        pos += meta_len
        bundle = Bundle(meta={k: v for k, v in meta.items() if k != "tensors"})

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > end:
                raise FormatError("a tensor's data runs past the end of the body")
            chunk = data[pos : pos + n]
            pos += n
            return chunk

        for t in meta["tensors"]:
            name, shape = t["name"], tuple(t["shape"])
            bundle.order.append(name)
            dtype = np.dtype(t["dtype"])
            if t["kind"] == "dense":
                raw = take(dtype.itemsize * math.prod(shape))
                bundle.dense[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
                continue
            book = np.frombuffer(take(dtype.itemsize * t["k"]), dtype=dtype).copy()
            symbols = huffman.decode(take((t["w_bits"] + 7) // 8), t["w_bits"], t["w_lengths"], t["count"])
            gaps = huffman.decode(take((t["g_bits"] + 7) // 8), t["g_bits"], t["g_lengths"], t["count"])
            positions, indices = relative.decode(gaps, symbols, pad=t["k"], size=math.prod(shape))
            bundle.shared[name] = SharedTensor(
                shape, book, np.asarray(positions, dtype=np.int64), np.asarray(indices, dtype=np.uint16),
                t["index_bits"],
            )
        if pos != end:
            raise FormatError(f"{end - pos} unread bytes after the last tensor")
    except FormatError:
        raise
    except (ValueError, KeyError, TypeError, zlib.error, struct.error) as exc:
        raise FormatError(f"malformed body ({exc})") from None
    return bundle
