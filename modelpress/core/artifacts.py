"""The model artifact handed between pipeline steps: a folder with a manifest.

    <dir>/manifest.json   format, input spec, and (torch) the architecture spec
    <dir>/model.onnx      format "onnx": deployable variants
    <dir>/weights.npz     format "torch-npz": torch weights between steps; a tensor
                          that is mostly zeros is stored as its nonzero values plus
                          a bitmask (`<key>.nz` + `<key>.mask`), listed in the manifest

Why not pickle, `torch.save` or `mlflow.pytorch`: each of those unpickles on
load, and a registry is shared storage, so a tampered artifact would run code
in every pipeline that reads it. A JSON spec that selects one of *our*
classes, plus numpy arrays read with `allow_pickle=False`, cannot. (safetensors
would do as well; `.npz` needs no extra dependency.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from modelpress.core.config import FrozenConfig, parse_config
from modelpress.errors import ModelpressError
from modelpress.models.zoo import ArchSpec, DigitsCNNSpec, MLPSpec

if TYPE_CHECKING:
    import onnx
    import torch

MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.npz"


class InputSpec(FrozenConfig):
    name: str = Field(default="input", description="Graph input name.")
    shape: tuple[int, ...] = Field(description="Shape of one sample, without the batch axis.")
    dtype: Literal["float32", "int64"] = Field(
        default="float32", description="Input element type (int64 for token ids)."
    )


class ModelManifest(FrozenConfig):
    format: Literal["onnx", "torch-npz"] = Field(description="How the model is stored.")
    input: InputSpec = Field(description="What the model takes.")
    architecture: ArchSpec | None = Field(
        default=None, description="Architecture spec; required for torch-npz."
    )
    dataset: str | None = Field(default=None, description="Dataset the model was trained on.")
    sparse: tuple[str, ...] = Field(
        default=(), description="torch-npz: weights stored as nonzero values + bitmask."
    )


def read_manifest(model_dir: str | Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelpressError(
            f"{model_dir} is not a modelpress model folder (no {MANIFEST})",
            "pass a folder written by a modelpress step or registered by modelpress",
        )
    return parse_config(ModelManifest, path.read_text(), str(path))


def _write_manifest(model_dir: Path, manifest: ModelManifest) -> None:
    (model_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))


def save_torch(
    model_dir: str | Path,
    module: torch.nn.Module,
    arch: DigitsCNNSpec | MLPSpec,
    input_spec: InputSpec,
    dataset: str | None = None,
) -> Path:
    import numpy as np

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    sparse = []
    for key, tensor in module.state_dict().items():
        a = tensor.detach().cpu().numpy()
        nz = a[a != 0]
        # values (4 B each) + 1 bit per entry beats 4 B per entry below ~97% density
        if a.dtype == np.float32 and a.size >= 64 and nz.size * 4 + a.size / 8 < a.size * 4:
            arrays[f"{key}.nz"] = nz
            arrays[f"{key}.mask"] = np.packbits(a.reshape(-1) != 0)
            sparse.append(key)
        else:
            arrays[key] = a
    with open(out / WEIGHTS_FILE, "wb") as fh:
        np.savez(fh, **arrays)
    _write_manifest(
        out,
        ModelManifest(
            format="torch-npz", input=input_spec, architecture=arch, dataset=dataset, sparse=tuple(sparse)
        ),
    )
    return out


def _dense(npz: Any, key: str, shape: tuple[int, ...]) -> Any:
    """Rebuild a tensor stored as nonzero values + bitmask."""
    import numpy as np

    size = int(np.prod(shape))
    mask = np.unpackbits(npz[f"{key}.mask"], count=size).astype(bool)
    values = npz[f"{key}.nz"]
    if values.size != int(mask.sum()):
        raise ValueError(f"{key}: {values.size} values for {int(mask.sum())} mask bits")
    dense = np.zeros(size, dtype=values.dtype)
    dense[mask] = values
    return dense.reshape(shape)


def load_torch(model_dir: str | Path) -> tuple[torch.nn.Module, ModelManifest]:
    import numpy as np
    import torch

    from modelpress.models.zoo import build_model

    manifest = read_manifest(model_dir)
    if manifest.format != "torch-npz" or manifest.architecture is None:
        raise ModelpressError(
            f"{model_dir} holds a {manifest.format} model, not a torch model",
            "this step needs a torch source model",
        )
    module = build_model(manifest.architecture)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    try:
        with np.load(Path(model_dir) / WEIGHTS_FILE, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(npz[k].copy()) for k in npz.files if k not in _sparse_keys(manifest)}
            for key in manifest.sparse:
                if key not in shapes:
                    raise ValueError(f"sparse weight {key} is not in the architecture")
                state[key] = torch.from_numpy(_dense(npz, key, shapes[key]))
        module.load_state_dict(state, strict=True)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelpressError(
            f"weights in {model_dir} are corrupt or do not match the architecture "
            f"({str(exc).splitlines()[0]})",
            "re-register the source model",
        ) from None
    module.eval()
    return module, manifest


def _sparse_keys(manifest: ModelManifest) -> set[str]:
    return {f"{k}.{part}" for k in manifest.sparse for part in ("nz", "mask")}


def save_onnx(
    model_dir: str | Path,
    model: onnx.ModelProto | str | Path,
    input_spec: InputSpec,
    dataset: str | None = None,
) -> Path:
    import onnx

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (str, Path)):
        if Path(model).resolve() != (out / ONNX_FILE).resolve():
            shutil.copyfile(model, out / ONNX_FILE)
    else:
        onnx.save_model(model, str(out / ONNX_FILE))
    _write_manifest(out, ModelManifest(format="onnx", input=input_spec, dataset=dataset))
    return out


def onnx_file(model_dir: str | Path) -> Path:
    manifest = read_manifest(model_dir)
    if manifest.format != "onnx":
        raise ModelpressError(
            f"{model_dir} holds a {manifest.format} model, not ONNX", "add an export_onnx step first"
        )
    return Path(model_dir) / ONNX_FILE


def check_onnx(path: str | Path, what: str) -> onnx.ModelProto:
    """Load and check an ONNX file; a corrupt one is a one-line error naming `what`."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(
            f"{what}: ONNX file is corrupt or invalid ({reason})",
            "re-export or re-register the model",
        ) from None
    return model


def validate_model_dir(model_dir: str | Path, what: str) -> ModelManifest:
    """Fail fast on a corrupt model before any compute is spent on it."""
    manifest = read_manifest(model_dir)
    if manifest.format == "onnx":
        check_onnx(Path(model_dir) / ONNX_FILE, what)
    else:
        load_torch(model_dir)
    return manifest
