"""Pack an onnxruntime-gpu wheel small enough to carry to a lent GPU machine that has no package index.

    python benchmarks/gpu_pack_ort.py onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl \
        --arch 90 --out .gpu/ort.tar.xz

The wheel is 256 MB, most of it CUDA kernels for seven GPU generations. Kernels for other
architectures than `--arch` are zeroed in place (their fatbin headers stay, so the library's layout
is unchanged and the CUDA runtime still picks the `--arch` cubin), the C-API library the Python
module does not load is dropped, and the rest is tarred with xz (the lent machine has xz, not zstd):
about 61 MB for sm_90 (H100, H200). On the machine: `xz -dc ort.tar.xz | tar -C /tmp/site -xf -`
and `PYTHONPATH=/tmp/site`. Used to measure `benchmarks/gpu_targets.py`; nothing else needs it.
"""

from __future__ import annotations

import argparse
import io
import lzma
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
CUDA_LIB = "onnxruntime/capi/libonnxruntime_providers_cuda.so"


def fatbin_section(path: Path) -> tuple[int, int]:
    """File offset and size of the ELF section .nv_fatbin."""
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if ".nv_fatbin" in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[3], 16), int(fields[4], 16)
    raise SystemExit(f"{path}: no .nv_fatbin section")


def keep_arch(data: bytearray, offset: int, size: int, arch: int) -> tuple[int, int]:
    """Zero every cubin not for `arch` in containers that hold one for it; (bytes zeroed, bytes kept)."""
    pos, end, zeroed, kept = offset, offset + size, 0, 0
    while pos < end:
        magic, _, header, body = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:  # containers are 8-byte aligned
            pos += 8
            continue
        entries, e, stop = [], pos + header, pos + header + body
        while e < stop:
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", data, e)
            sm = struct.unpack_from("<I", data, e + 28)[0]
            entries.append((sm, e + entry_header, payload))
            e += entry_header + payload
        if any(sm == arch for sm, _, _ in entries):  # a container without one is left whole
            for sm, start, n in entries:
                if sm == arch:
                    kept += n
                else:
                    data[start : start + n] = bytes(n)
                    zeroed += n
        pos = stop
    return zeroed, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="an onnxruntime-gpu wheel")
    ap.add_argument("--arch", type=int, default=90, help="the GPU's SM version to keep (default 90: Hopper)")
    ap.add_argument("--out", type=Path, required=True, help="the .tar.xz to write")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as whl, lzma.open(args.out, "wb", preset=9) as xz, \
            tarfile.open(fileobj=xz, mode="w") as tar:
        for info in whl.infolist():
            if info.is_dir() or info.filename.startswith("onnxruntime/capi/libonnxruntime.so"):
                continue
            data = bytearray(whl.read(info))
            if info.filename == CUDA_LIB:
                tmp = args.out.with_suffix(".so")
                tmp.write_bytes(data)
                zeroed, kept = keep_arch(data, *fatbin_section(tmp), args.arch)
                tmp.unlink()
                print(f"{CUDA_LIB}: kept {kept / 1e6:.0f} MB of sm_{args.arch} kernels, zeroed {zeroed / 1e6:.0f} MB")
            member = tarfile.TarInfo(info.filename)
            member.size, member.mode = len(data), 0o755 if info.filename.endswith(".so") else 0o644
            tar.addfile(member, io.BytesIO(bytes(data)))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
