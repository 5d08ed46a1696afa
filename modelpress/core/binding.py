"""Bind data columns to a model's inputs: by name, with the model's dtypes and shapes, checked once.

This is the preflight of a run's data. It runs in the resolve step, before any compute, and
every problem is one line that names the input or column and the fix: an input the data
does not provide, a column that is missing, text where numbers are expected, a lossy dtype
(fractions for int64 token ids), a per-sample shape the model cannot take, an empty split.
Lossless conversions are made (integers to float, float64 to float32) and recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpress.core.data import SPLITS, Split
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

    from modelpress.core.artifacts import ModelManifest, TensorSpec
    from modelpress.core.data_source import DataConfig, RawData

Source = str | tuple[str, ...]  # one column, or scalar columns stacked as features


def bind(raw: RawData, manifest: ModelManifest, config: DataConfig) -> tuple[dict[str, Split], dict[str, Any]]:
    """Each split as arrays per model input (plus raw labels), and a note of what was read from where."""
    names = {i.name for i in manifest.inputs}
    unknown = sorted(set(config.inputs) - names)
    if unknown:
        raise ModelpressError(f"data.inputs names {unknown}, which the model does not take (inputs: "
                              f"{', '.join(sorted(names))})", "key data.inputs by the model's input names")
    how = raw.provenance.get("split", {}).get("method", "?")
    for split in SPLITS:
        if len(next(iter(raw.tables[split].values()), [])) == 0:
            raise ModelpressError(f"the {split} split of the data is empty (split by: {how})",
                                  "give it rows, or drop the split column so modelpress splits the rows (data.split)")
    sources = {spec.name: _source(spec, raw, config, len(manifest.inputs)) for spec in manifest.inputs}
    splits, notes = {}, {}
    for split in SPLITS:
        table = raw.tables[split]
        inputs = {}
        for spec in manifest.inputs:
            inputs[spec.name], note = _array(table, sources[spec.name], spec, split)
            notes.setdefault(spec.name, note)
        _same_dynamic_lengths(inputs, manifest.inputs)
        splits[split] = Split(inputs, table[raw.label] if raw.label else None)
    return splits, {"inputs": notes, "label": raw.label}


def _source(spec: TensorSpec, raw: RawData, config: DataConfig, n_inputs: int) -> Source:
    columns = list(raw.tables["train"])
    if spec.name in config.inputs:
        return config.inputs[spec.name]
    if spec.name in columns:
        return spec.name
    if n_inputs == 1:
        train = raw.tables["train"]
        numeric = [c for c in columns if c != raw.label and train[c].dtype.kind in "biuf"]
        if numeric:
            return numeric[0] if len(numeric) == 1 else tuple(numeric)
    raise ModelpressError(
        f"model input {spec.name!r} is not a column of the data (columns: {', '.join(columns[:12])})",
        f"map it in the recipe: data: {{inputs: {{{spec.name}: <column>}}}}")


def _array(table: dict[str, np.ndarray], source: Source, spec: TensorSpec, split: str) -> tuple[np.ndarray, str]:
    import numpy as np

    cols = (source,) if isinstance(source, str) else source
    missing = [c for c in cols if c not in table]
    if missing:
        raise ModelpressError(f"the {split} split has no column {missing[0]!r} for model input {spec.name!r} "
                              f"(columns: {', '.join(list(table)[:12])})", "fix data.inputs or the data file")
    if isinstance(source, str):
        arr = np.asarray(table[source])
    else:
        flat = [c for c in cols if np.asarray(table[c]).ndim != 1]
        if flat:
            raise ModelpressError(f"column {flat[0]!r} holds arrays; only scalar columns stack into features",
                                  f"map model input {spec.name!r} to that one column instead")
        arr = np.stack([np.asarray(table[c]) for c in cols], axis=1)
    what = f"column {source!r}" if isinstance(source, str) else f"{len(cols)} columns ({cols[0]} ... {cols[-1]})"
    arr, cast = _cast(arr, spec, what)
    arr, shaped = _shape(arr, spec, what)
    return arr, "; ".join(p for p in (f"from {what}", cast, shaped) if p)


def _cast(arr: np.ndarray, spec: TensorSpec, what: str) -> tuple[np.ndarray, str]:
    """The model's dtype, only where nothing is lost."""
    import numpy as np

    want, have = np.dtype(spec.dtype), arr.dtype
    if have == want:
        return arr, ""
    if have.kind in "OSU":
        raise ModelpressError(f"data {what} holds text, but model input {spec.name!r} takes {spec.dtype}",
                              "encode it as numbers first (token ids, category codes)")
    lossless = (want.kind == "f" and have.kind in "biuf") or (want.kind in "iu" and have.kind in "biu") or (
        want.kind == "b" and have.kind == "b")
    if want.kind in "iu" and have.kind in "iu" and arr.size:
        info = np.iinfo(want)
        lossless = info.min <= arr.min() and arr.max() <= info.max
    if not lossless:
        raise ModelpressError(
            f"dtype mismatch: data {what} holds {have}, but model input {spec.name!r} takes {spec.dtype}",
            f"write the column as {spec.dtype} (e.g. token ids as integers)")
    return arr.astype(want), f"{have} -> {spec.dtype}"


def _shape(arr: np.ndarray, spec: TensorSpec, what: str) -> tuple[np.ndarray, str]:
    import numpy as np

    per = arr.shape[1:]
    model = spec.shape
    if len(per) == len(model) and all(isinstance(m, str) or m == p for m, p in zip(model, per)):
        return arr, ""
    if spec.fixed and int(np.prod(per)) == int(np.prod(model)):
        return arr.reshape(len(arr), *model), f"reshaped {per} -> {model}"
    raise ModelpressError(
        f"model input {spec.name!r} takes {tuple(model)} per sample, but data {what} gives {tuple(per)}",
        "check data.inputs, or export the model for this data's shape")


def _same_dynamic_lengths(inputs: dict[str, np.ndarray], specs: tuple[TensorSpec, ...]) -> None:
    """Inputs sharing a named axis (input_ids and attention_mask on 'sequence') must agree on its length."""
    seen: dict[str, tuple[str, int]] = {}
    for spec in specs:
        for axis, dim in enumerate(spec.shape, start=1):
            if isinstance(dim, str) and dim != "?":
                length = inputs[spec.name].shape[axis]
                other = seen.setdefault(dim, (spec.name, length))
                if other[1] != length:
                    raise ModelpressError(
                        f"inputs {other[0]!r} and {spec.name!r} share axis {dim!r} but the data gives them "
                        f"lengths {other[1]} and {length}", "pad both to one length")


def vocabularies(onnx_path: Any) -> dict[str, int]:
    """Integer inputs the graph looks up in an embedding table, with the table's row count.

    Token ids must lie in [0, rows): an id past the vocabulary reads out of bounds.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    tables = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) == 2}
    inputs = {i.name for i in model.graph.input}
    out: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in inputs and node.input[0] in tables:
            out[node.input[1]] = int(tables[node.input[0]])
    return out
