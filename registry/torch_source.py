"""Torch sources logged with `mlflow.pytorch.log_model`, as torch-export model folders.

Two forms reach the registry:

* MLflow 3's default, a `torch.export` program (`data/model.pt2`). It is checked record by
  record (models.program), loaded, and exported again with a dynamic batch axis: a program
  logged from a one-row input example has its batch fixed at 1.
* The pickled module (`data/model.pth`), the default before MLflow 3. Unpickling runs
  whatever code the pickle names, so it is loaded only when the recipe says
  `trust_pickled_source: true` (or the CLI gets `--trust-pickled-source`); without it,
  nothing is unpickled. The opt-in is recorded on every variant made from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelpress.core import artifacts
from modelpress.errors import ModelpressError

TRUST_KEY = "trust_pickled_source"
TRUST_FLAG = "--trust-pickled-source"


def fetch_pytorch(local: Path, mlmodel: dict[str, Any], out_dir: Path, what: str, dataset: str | None,
                  trust_pickle: bool) -> artifacts.ModelManifest:
    """Write the downloaded `mlflow.pytorch` model in `local` to `out_dir` as a torch-export folder."""
    flavor = mlmodel["flavors"]["pytorch"]
    data = local / str(flavor.get("model_data", "data"))
    if (data / "model.pt2").is_file():
        module, inputs, outputs, note = _from_program(data / "model.pt2", what)
    elif (data / "model.pth").is_file():
        if not trust_pickle:
            raise ModelpressError(
                f"{what} is a pickled torch module (mlflow.pytorch before MLflow 3, or serialization_format="
                "'pickle'); unpickling it would run any code the file names, so modelpress does not by default",
                f"if you trust whoever logged it, set `{TRUST_KEY}: true` in the recipe or pass {TRUST_FLAG}; "
                "or log it again with mlflow.pytorch.log_model(model, input_example=...), which writes a "
                "pickle-free torch.export program",
            )
        module, inputs, outputs, note = _from_pickle(data / "model.pth", mlmodel, what)
    else:
        raise ModelpressError(f"{what}: the pytorch flavor holds neither model.pt2 nor model.pth",
                              "log the model with mlflow.pytorch.log_model")
    artifacts.save_program_dir(out_dir, module, inputs, outputs, dataset)
    (Path(out_dir) / artifacts.NOTES_FILE).write_text(json.dumps({"source": note}, indent=2))
    return artifacts.read_manifest(out_dir)


def _from_program(path: Path, what: str) -> tuple[Any, tuple, tuple, dict[str, Any]]:
    import torch

    from modelpress.models import program as P

    prog = P.load_program(path, what)
    inputs, outputs = P.io_of(prog)
    batch = P.fixed_batch(prog)
    module = P.as_module(prog, batch=batch)
    _same_function(prog.module(), module, inputs, batch or 3, what)
    note: dict[str, Any] = {"format": "mlflow.pytorch torch.export program (pt2)", "unpickled": False}
    if batch is not None:
        # A program traced from a `batch`-row example; the reshapes that spelled out that size now read it.
        try:
            with torch.no_grad():
                module(*P.examples(inputs, batch=batch + 2))
        except Exception as exc:  # noqa: BLE001 - any failure means the graph depends on the batch size
            raise ModelpressError(
                f"{what} was logged from an input example of {batch} row(s), which fixed the program's batch "
                f"size at {batch}, and its graph depends on that size ({str(exc).splitlines()[0][:160]})",
                "log it again with an input_example of 2 or more rows, so torch.export keeps the batch axis dynamic",
            ) from None
        note["batch_freed"] = f"logged with batch {batch}; exported again with a dynamic batch"
    return module, inputs, outputs, note


def _from_pickle(path: Path, mlmodel: dict[str, Any], what: str) -> tuple[Any, tuple, tuple, dict[str, Any]]:
    import torch

    inputs = _signature_inputs(mlmodel, what)
    try:
        module = torch.load(str(path), weights_only=False, map_location="cpu")
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(f"{what}: the pickled module does not load here ({reason[:200]})",
                              "install the packages its classes come from, or log it again as a torch.export "
                              "program (mlflow.pytorch.log_model with MLflow 3)") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelpressError(f"{what}: the pickle holds a {type(module).__name__}, not a torch module",
                              "log the nn.Module itself")
    module.eval()
    from modelpress.models.program import examples

    with torch.no_grad():
        out = module(*examples(inputs))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outputs = tuple(artifacts.TensorSpec(name="output" if len(outs) == 1 else f"output_{i}",
                                         shape=tuple(o.shape[1:]), dtype=str(o.dtype).removeprefix("torch."))
                    for i, o in enumerate(outs))
    note = {"format": "mlflow.pytorch pickled module", "unpickled": True,
            "trusted_by": f"recipe {TRUST_KEY} / {TRUST_FLAG}"}
    return module, inputs, outputs, note


def _signature_inputs(mlmodel: dict[str, Any], what: str) -> tuple[artifacts.TensorSpec, ...]:
    """Input specs from the MLmodel's tensor signature (what the input example recorded)."""
    raw = (mlmodel.get("signature") or {}).get("inputs")
    try:
        specs = json.loads(raw) if raw else []
    except ValueError:
        specs = []
    if not specs or any(s.get("type") != "tensor" for s in specs):
        raise ModelpressError(
            f"{what}: the pickled module has no tensor input signature, so its input shape is unknown",
            "log it with an input_example (a numpy array), or as a torch.export program",
        )
    out = []
    for i, s in enumerate(specs):
        ts = s["tensor-spec"]
        shape = tuple(int(d) if int(d) >= 0 else f"axis{j}" for j, d in enumerate(ts["shape"]))
        name = s.get("name") or ("input" if len(specs) == 1 else f"input_{i}")
        out.append(artifacts.TensorSpec(name=name, shape=shape[1:], dtype=ts["dtype"]))
    return tuple(out)


def _same_function(reference: Any, module: Any, inputs: tuple, batch: int, what: str) -> None:
    """The rebuilt module must compute what the logged program computes (a check on modelpress)."""
    import torch

    from modelpress.models.program import examples

    gen = torch.Generator().manual_seed(0)
    xs = tuple(torch.rand(x.shape, generator=gen).to(x.dtype) if x.is_floating_point() else x
               for x in examples(inputs, batch=batch))
    with torch.no_grad():
        want, got = reference(*xs), module(*xs)
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = got if isinstance(got, (tuple, list)) else (got,)
    for w, g in zip(want, got):
        if w.shape != g.shape or not torch.allclose(w.float(), g.float(), atol=1e-4, rtol=1e-4):
            raise ModelpressError(
                f"{what}: modelpress's trainable copy of the program does not compute what the program does",
                "report this model to the modelpress maintainers; meanwhile register it as ONNX and quantize only",
            )
