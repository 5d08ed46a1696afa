"""Transformer encoders logged with `mlflow.transformers.log_model` or
`mlflow.sentence_transformers.log_model`, as transformers model folders.

Only the encoder's config and safetensors weights are taken (models.hf): the tokenizer stays in
the registry, the data brings token ids, and a sentence-transformers model's pooling is the
embedding task's mean pooling. A config that needs remote code, or weights saved as a pickle
(`pytorch_model.bin`), is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from modelpress.core import artifacts
from modelpress.errors import ModelpressError


def fetch_transformers(local: Path, mlmodel: dict[str, Any], out_dir: Path, what: str,
                       dataset: str | None) -> artifacts.ModelManifest:
    from modelpress.models import hf

    flavors = mlmodel["flavors"]
    if "transformers" in flavors:
        binary, logged_as = local / str(flavors["transformers"].get("model_binary", "model")), "mlflow.transformers"
    else:  # sentence_transformers: the encoder's files sit at the root of the saved folder
        binary = local / str(flavors.get("python_function", {}).get("data", "model.sentence_transformer"))
        logged_as = "mlflow.sentence_transformers"
    if not (binary / hf.WEIGHTS_FILE).is_file():
        found = sorted(p.name for p in binary.glob("*")) if binary.is_dir() else []
        raise ModelpressError(
            f"{what}: the transformers model has no single {hf.WEIGHTS_FILE} (found {', '.join(found) or 'nothing'})",
            hf.FIX_SAFETENSORS + "; sharded and .bin weights are not read",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (hf.CONFIG_FILE, hf.WEIGHTS_FILE):
        if (binary / name).is_file():
            shutil.copyfile(binary / name, out_dir / name)
    module = hf.load(out_dir, {}, what)
    hidden = int(module.model.config.hidden_size)
    ids = tuple(artifacts.TensorSpec(name=n, shape=("sequence",), dtype="int64") for n in hf.INPUTS)
    out = (artifacts.TensorSpec(name="last_hidden_state", shape=("sequence", hidden), dtype="float32"),)
    artifacts.write_manifest(out_dir, artifacts.ModelManifest(format="transformers", inputs=ids, outputs=out,
                                                             dataset=dataset))
    note = {"format": f"{logged_as} {type(module.model).__name__} (safetensors)", "unpickled": False}
    (out_dir / artifacts.NOTES_FILE).write_text(json.dumps({"source": note}, indent=2))
    return artifacts.read_manifest(out_dir)
