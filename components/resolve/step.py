"""The resolve step: the source fetched from the registry and the run's data bound to it (all preflight)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelpress.core.progress import say


def resolve_step(config_json: str, tracking_uri: str, source_ref: Path, model_out: Path, dataset_out: Path) -> dict:
    """Fetch the pinned source (`source_ref`: a SourceRef as JSON) and bind the run's data to its inputs."""
    from modelpress.components.resolve.run_data import prepare_data
    from modelpress.components.resolve.settings import ResolveConfig
    from modelpress.core.config import parse_config
    from modelpress.registry import source as src
    from modelpress.registry.store import connect

    spec = parse_config(ResolveConfig, config_json, "resolve config")
    client = connect(tracking_uri)
    ref = src.SourceRef(**json.loads(Path(source_ref).read_text()))
    manifest = src.fetch(client, ref, Path(model_out), trust_pickle=spec.trust_pickled_source)
    _refuse_torch_steps_on_onnx(spec, manifest)
    say(f"model: {', '.join(i.describe() for i in manifest.inputs)} -> "
        f"{', '.join(o.describe() for o in manifest.outputs)}")
    data = prepare_data(spec, manifest, Path(model_out), ref.tags, ref.run_id, client)
    data.save(dataset_out)
    info = data.info
    rows = info["data"]["rows"]
    split = info["data"].get("split", {})
    say(f"data: {data.name}: {rows['train']} train, {rows['val']} val, {rows['test']} test rows "
        f"(split: {split.get('method', '?')}{', seed ' + str(split['seed']) if 'seed' in split else ''}); "
        f"labels: {info['data']['label'] or 'none'}")
    for name, note in info["data"]["inputs"].items():
        say(f"  input {name}: {note}")
    say(f"task: {info['task']} ({info['task_reason']}); scored output: {info['output']}"
        + (f"; pooling: {info['pooling']}" if "pooling" in info else ""))
    return asdict(ref)


def _refuse_torch_steps_on_onnx(spec: Any, manifest: Any) -> None:
    """Steps that train torch weights need a torch model: the source, or a distilled student."""
    from modelpress.errors import ModelpressError

    if spec.needs_torch_source and not manifest.is_torch:
        raise ModelpressError(
            f"{', '.join(spec.needs_torch_source)} train torch weights, but {spec.source} is {manifest.format}",
            "register the torch model itself (mlflow.pytorch.log_model), add a distill section (its student "
            "is a torch model), or drop those sections; quantize works on ONNX as it is",
        )
