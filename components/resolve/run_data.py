"""The resolve step's data half: read the run's data, bind it to the source model, pick the task.

Everything here is preflight: it runs before any compute, and each problem it finds ends the
run with one line (nothing is registered). What it decided (where the data came from, how it
was split, which output is scored, the task and why) is recorded in the dataset's `info` and
travels to the variant's tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.core.data import SPLITS, DatasetSplits, Split
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from modelpress.components.resolve.settings import ResolveConfig
    from modelpress.core.artifacts import ModelManifest, TensorSpec
    from modelpress.core.data_source import RawData


def prepare_data(recipe: ResolveConfig, manifest: ModelManifest, model_dir: Path, tags: dict[str, str],
                 run_id: str | None, client: Any) -> DatasetSplits:
    from modelpress.core import artifacts
    from modelpress.core.binding import bind, vocabularies
    from modelpress.core.data_source import read_data
    from modelpress.core.tasks import infer_task
    from modelpress.registry.tags import DATASET

    tag = manifest.dataset or tags.get(DATASET)
    builtin = _uses_builtin(recipe, tag)
    raw = _builtin(tag) if builtin else read_data(recipe.data, tag, run_id, client)
    splits, binding = bind(raw, manifest, recipe.data)
    output = _scored_output(recipe.task.output, manifest)
    task, why = infer_task(recipe.task, splits["train"].labels, output)
    recipe.check_gates_for(task, why)
    _training_needs_classes(recipe, task, why)
    splits = {s: _labels_for(task, part, s) for s, part in splits.items()}
    info: dict[str, Any] = {
        "data": {**raw.provenance, **binding, "rows": {s: len(splits[s]) for s in SPLITS}},
        "task": task, "task_reason": why, "output": output.name,
        "output_reason": "set in the recipe" if recipe.task.output else "the model's first output",
        "fixed_inputs": [i.name for i in manifest.inputs if i.fixed],
    }
    if task == "embedding":
        info["pooling"], info["mask_input"] = _pooling(recipe.task.pooling, manifest, output)
    if manifest.format == "onnx":
        info["vocabularies"] = vocabularies(artifacts.onnx_file(model_dir))
    elif manifest.format == "transformers":  # token ids index the word embeddings
        from modelpress.models.hf import check_config

        info["vocabularies"] = {"input_ids": int(check_config(model_dir, "source").vocab_size)}
    name = tag if builtin else _data_name(recipe, tag)
    seed = raw.provenance.get("split", {}).get("seed", recipe.data.split.seed)
    return DatasetSplits(name, seed, splits["train"], splits["val"], splits["test"], info)


def _training_needs_classes(recipe: ResolveConfig, task: str, why: str) -> None:
    """The torch steps fine-tune on class labels (cross-entropy, accuracy on val)."""
    if recipe.needs_labels and task != "classification":
        raise ModelpressError(
            f"{', '.join(recipe.needs_labels)} fine-tune on class labels, but this run's task is {task} ({why})",
            "drop those sections (quantize alone works for any task), or give class labels (data.label)",
        )


def _uses_builtin(recipe: ResolveConfig, tag: str | None) -> bool:
    from modelpress.core.data import known_datasets

    d = recipe.data
    return d.uri is None and d.train is None and d.run_input is None and tag in known_datasets()


def _builtin(name: str) -> RawData:
    from modelpress.core.data import load_dataset
    from modelpress.core.data_source import RawData

    data = load_dataset(name)
    tables = {s: {"input": data.get(s).x, "label": data.get(s).y} for s in SPLITS}
    return RawData(tables, "label", {"dataset": name, "split": {"method": "seeded (built-in)", "seed": data.seed}})


def _data_name(recipe: ResolveConfig, tag: str | None) -> str:
    d = recipe.data
    where = d.uri or d.train or (d.run_input and (d.run_input.name or "run input")) or tag or "data"
    return str(where).rstrip("/").rsplit("/", 1)[-1]


def _scored_output(name: str | None, manifest: ModelManifest) -> TensorSpec:
    outputs = manifest.outputs
    if not outputs:
        raise ModelpressError("the model declares no outputs", "re-export it with named outputs")
    if name is None:
        return outputs[0]
    for spec in outputs:
        if spec.name == name:
            return spec
    raise ModelpressError(f"task.output {name!r} is not an output of the model (outputs: "
                          f"{', '.join(o.name for o in outputs)})", "set task.output to one of them")


def _labels_for(task: str, part: Split, split: str) -> Split:
    """Class ids as int64, regression targets as float32 (one column per output value); none for embeddings."""
    import numpy as np

    if task == "embedding":
        return Split(part.inputs, None)
    y = np.asarray(part.labels)
    if task == "classification":
        if not np.all(np.isfinite(y.astype(np.float64))) or np.any(y != np.round(y)):
            raise ModelpressError(f"the {split} split's labels are not all whole class ids",
                                  "fix the label column (NaN, fractions)")
        return Split(part.inputs, y.astype(np.int64).reshape(len(y)))
    return Split(part.inputs, y.astype(np.float32).reshape(len(y), -1))


def _pooling(choice: str, manifest: ModelManifest, output: TensorSpec) -> tuple[str, str | None]:
    """How a token-level output becomes one vector per sample; the mask input it averages under."""
    masks = [i.name for i in manifest.inputs if "mask" in i.name.lower() and len(i.shape) == 1]
    mask = masks[0] if masks else None
    if choice == "auto":
        choice = "mean" if (len(output.shape) == 2 and mask is not None) else "none"
    if choice == "mean" and len(output.shape) != 2:
        raise ModelpressError(f"task.pooling mean needs a (batch, sequence, hidden) output; {output.name!r} "
                              f"has per-sample shape {tuple(output.shape)}", "use task.pooling: none")
    return choice, (mask if choice == "mean" else None)
