"""The model artifact handed between pipeline steps: a folder with a manifest.

    <dir>/manifest.json   format, inputs and outputs, and (torch-npz) the architecture spec
    <dir>/model.onnx      format "onnx": deployable variants
    <dir>/weights.npz     format "torch-npz": a catalog model's weights between steps; a tensor
                          that is mostly zeros is stored as its nonzero values plus
                          a bitmask (`<key>.nz` + `<key>.mask`), listed in the manifest
    <dir>/program.pt2     format "torch-export": any other torch model, as a torch.export
                          program (graph as JSON, weights as raw bytes)

Why not pickle, `torch.save` or a pickled `mlflow.pytorch` model: each of those unpickles
on load, and a registry is shared storage, so a tampered artifact would run code in every
pipeline that reads it. A JSON spec that selects one of *our* classes plus numpy arrays
read with `allow_pickle=False` cannot, and neither can a .pt2 archive that
`models.program` has checked record by record before loading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from modelpress.core.config import FrozenConfig, parse_config
from modelpress.errors import ModelpressError
from modelpress.models.zoo import ArchSpec, DigitsCNNSpec, MLPSpec

if TYPE_CHECKING:
    import onnx
    import torch

MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.npz"
PROGRAM_FILE = "program.pt2"
# What each step noted (which source form, what pruning removed...); travels in the folder up to registration.
NOTES_FILE = "technique_notes.json"
TORCH_FORMATS = ("torch-npz", "torch-export", "transformers")
EXTERNAL_DATA_FILE = "model.onnx.data"  # only past protobuf's 2 GiB limit
_PROTOBUF_LIMIT = 2**31 - 2**26  # leave room for the graph itself


DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
Dtype = Literal["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]


class TensorSpec(FrozenConfig):
    name: str = Field(default="input", min_length=1, description="Graph input or output name.")
    shape: tuple[int | str, ...] = Field(
        description="Shape of one sample, without the batch axis; a string is a dynamic axis "
        "(e.g. 'sequence'), whose length comes from the data."
    )
    dtype: Dtype = Field(default="float32", description="Element type (int64 for token ids).")

    @property
    def fixed(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def describe(self) -> str:
        return f"{self.name} {self.dtype}[batch{''.join(f', {d}' for d in self.shape)}]"


class ModelManifest(FrozenConfig):
    format: Literal["onnx", "torch-npz", "torch-export", "transformers"] = Field(
        description="How the model is stored.")
    inputs: tuple[TensorSpec, ...] = Field(min_length=1, description="What the model takes, in graph order.")
    outputs: tuple[TensorSpec, ...] = Field(default=(), description="What the model returns, in graph order.")
    architecture: ArchSpec | None = Field(
        default=None, description="Architecture spec; required for torch-npz."
    )
    dataset: str | None = Field(default=None, description="Dataset the model was trained on.")
    sparse: tuple[str, ...] = Field(
        default=(), description="torch-npz: weights stored as nonzero values + bitmask."
    )
    heads_removed: dict[int, tuple[int, ...]] = Field(
        default_factory=dict, description="transformers: attention heads removed so far, by layer index."
    )

    @model_validator(mode="before")
    @classmethod
    def _single_input_manifests(cls, data: Any) -> Any:
        """Folders written before multi-input support say `input: {...}`; read them the same way."""
        if isinstance(data, dict) and "input" in data and "inputs" not in data:
            data = {**data, "inputs": [data["input"]]}
            del data["input"]
        return data

    @property
    def input(self) -> TensorSpec:
        """The one input of a single-input model (every torch technique needs one)."""
        if len(self.inputs) != 1:
            raise ModelpressError(
                f"this step takes a single-input model; this one has inputs "
                f"{', '.join(i.name for i in self.inputs)}",
                "use quantization only (quantize, evaluate) for multi-input models",
            )
        return self.inputs[0]

    @property
    def is_torch(self) -> bool:
        return self.format in TORCH_FORMATS


def read_manifest(model_dir: str | Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelpressError(
            f"{model_dir} is not a modelpress model folder (no {MANIFEST})",
            "pass a folder written by a modelpress step or registered by modelpress",
        )
    return parse_config(ModelManifest, path.read_text(), str(path))


def write_manifest(model_dir: Path, manifest: ModelManifest) -> None:
    (Path(model_dir) / MANIFEST).write_text(manifest.model_dump_json(indent=2))


def save_torch(
    model_dir: str | Path,
    module: torch.nn.Module,
    arch: DigitsCNNSpec | MLPSpec,
    input_spec: TensorSpec,
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
    write_manifest(
        out,
        ModelManifest(
            format="torch-npz", inputs=(input_spec,), outputs=(TensorSpec(name="logits", shape=(arch.num_classes,)),),
            architecture=arch, dataset=dataset, sparse=tuple(sparse),
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
    if manifest.format == "torch-export":
        return _load_program_dir(Path(model_dir), manifest), manifest
    if manifest.format == "transformers":
        from modelpress.models import hf

        return hf.load(Path(model_dir), manifest.heads_removed, str(model_dir)), manifest
    if manifest.format != "torch-npz" or manifest.architecture is None:
        raise ModelpressError(
            f"{model_dir} holds a {manifest.format} model, not a torch model",
            "this step needs a torch model: register the source with mlflow.pytorch.log_model, or drop the "
            "torch steps (distill, prune, deep_compress, quantize.qat) from the recipe",
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


def _load_program_dir(model_dir: Path, manifest: ModelManifest) -> torch.nn.Module:
    from modelpress.models.program import as_module, load_program

    return as_module(load_program(model_dir / PROGRAM_FILE, str(model_dir)))


def save_program_dir(
    model_dir: str | Path, module: torch.nn.Module, inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...], dataset: str | None = None,
) -> Path:
    """Write any torch module as a torch-export folder (exported with a dynamic batch axis)."""
    from modelpress.models.program import io_of, save_program

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    program = save_program(module, inputs, out / PROGRAM_FILE, f"model for {out.name}")
    produced = io_of(program)[1]
    if len(produced) == len(outputs):  # keep the names the source gave its outputs
        produced = tuple(p.model_copy(update={"name": o.name}) for p, o in zip(produced, outputs))
    write_manifest(out, ModelManifest(format="torch-export", inputs=inputs, outputs=produced, dataset=dataset))
    return out


def save_like(
    model_dir: str | Path, module: torch.nn.Module, manifest: ModelManifest, architecture: Any = None
) -> Path:
    """Write `module` in the format `manifest` describes: a catalog model (with its possibly new
    `architecture`) as torch-npz, anything else as a torch-export program."""
    if manifest.format == "torch-npz":
        return save_torch(model_dir, module, architecture or manifest.architecture, manifest.input, manifest.dataset)
    if manifest.format == "transformers":  # config + safetensors; `manifest` says which heads are gone
        from modelpress.models import hf

        hf.save(Path(model_dir), module)
        write_manifest(Path(model_dir), manifest)
        return Path(model_dir)
    return save_program_dir(model_dir, module, manifest.inputs, manifest.outputs, manifest.dataset)


def weights_bytes(model_dir: str | Path) -> int:
    """Size of the file that holds a torch model folder's weights."""
    manifest = read_manifest(model_dir)
    name = {"torch-export": PROGRAM_FILE, "transformers": "model.safetensors"}.get(manifest.format, WEIGHTS_FILE)
    return (Path(model_dir) / name).stat().st_size


def _sparse_keys(manifest: ModelManifest) -> set[str]:
    return {f"{k}.{part}" for k in manifest.sparse for part in ("nz", "mask")}


def save_onnx(model_dir: str | Path, model: onnx.ModelProto | str | Path, dataset: str | None = None) -> Path:
    """Write an ONNX model folder; its inputs and outputs are read from the graph.

    A file whose weights lie in external data files beside it (what `mlflow.onnx.log_model`
    writes by default) is read whole and written as one self-contained `model.onnx`, so every
    later step (and ONNX Runtime's quantizer) sees one file. Past protobuf's 2 GiB limit the
    weights go to one `model.onnx.data` beside it instead.
    """
    import onnx

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))  # external data is read from the file's own folder
    inputs, outputs = io_specs(model)
    dst = out / ONNX_FILE
    (out / EXTERNAL_DATA_FILE).unlink(missing_ok=True)
    if model.ByteSize() < _PROTOBUF_LIMIT:
        onnx.save_model(model, str(dst))
    else:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA_FILE)
    write_manifest(out, ModelManifest(format="onnx", inputs=inputs, outputs=outputs, dataset=dataset))
    return out


# ONNX TensorProto element types modelpress can feed and read, by numpy name.
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8",
                9: "bool"}


def io_specs(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out) and outputs."""
    weights = {t.name for t in model.graph.initializer}

    def spec(value: Any, kind: str) -> TensorSpec:
        t = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(t.elem_type) if value.type.HasField("tensor_type") else None
        if dtype is None:
            raise ModelpressError(
                f"ONNX {kind} {value.name!r} is not a tensor of a type modelpress can feed "
                f"({', '.join(DTYPES)})",
                "export the model with plain tensor inputs and outputs",
            )
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                for d in t.shape.dim] if t.HasField("shape") else ["batch", "?"]
        if not dims:
            raise ModelpressError(f"ONNX {kind} {value.name!r} is a scalar, with no batch axis",
                                  "export the model with a batch axis first")
        return TensorSpec(name=value.name, shape=tuple(dims[1:]), dtype=dtype)

    inputs = tuple(spec(v, "input") for v in model.graph.input if v.name not in weights)
    if not inputs:
        raise ModelpressError("the ONNX graph has no inputs", "export the model with its inputs")
    return inputs, tuple(spec(v, "output") for v in model.graph.output)


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
        # By path, so a model whose weights lie in an external data file is checked too.
        onnx.checker.check_model(str(path))
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


def read_notes(model_dir: Path) -> dict[str, Any]:
    """What earlier steps noted about the model in `model_dir` (empty when none did)."""
    path = Path(model_dir) / NOTES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_notes(model_dir: Path, notes: dict[str, Any]) -> None:
    """Notes travel inside the model folder, step to step, up to the register step."""
    if notes:
        (Path(model_dir) / NOTES_FILE).write_text(json.dumps(notes, indent=2))
