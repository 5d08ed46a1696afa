"""The prune technique: torch model folder in, smaller torch model folder out.

    load -> check layer names -> [sensitivity scan -> choose ratios]
         -> for each schedule step: prune to the step's ratio, fine-tune
         -> fine-tune -> save (structured: a narrower architecture; unstructured: sparse weights)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.components.prune import counting
from modelpress.components.prune.settings import (
    HEAD_METRICS,
    METRICS,
    UNSTRUCTURED_METRICS,
    PruneConfig,
    SensitivityConfig,
)
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.progress import say as _say
from modelpress.core.technique import Result, Technique, require_torch
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch

    from modelpress.components.prune.structured import Group


class _Pruner:
    """What differs between the two methods: what a 'layer' is and how it is cut."""

    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], config: PruneConfig) -> None:
        self.module = module
        self.input_shape = input_shape
        self.config = config
        known = list(counting.weight_layers(module))
        for key, names in (("layer_ratios", list(config.layer_ratios)), ("exclude", list(config.exclude))):
            for name in names:
                if name not in known:
                    raise ModelpressError(
                        f"prune.{key}: this model has no Conv2d, Linear or Embedding layer named {name!r}",
                        f"use one of: {', '.join(known)}",
                    )

    def layers(self) -> list[str]:
        """Names the ratios are chosen for."""
        raise NotImplementedError

    def final_ratios(self) -> dict[str, float]:
        raise NotImplementedError

    def prune_to(self, ratios: dict[str, float], global_ratio: float | None = None) -> None:
        """Prune each named layer to its ratio (unstructured: the rest to one global ratio)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Runs after each optimizer step while fine-tuning."""

    def report(self) -> dict:
        raise NotImplementedError


class _Unstructured(_Pruner):
    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], config: PruneConfig) -> None:
        from modelpress.components.prune.unstructured import Masks

        super().__init__(module, input_shape, config)
        self.names = [n for n in counting.weight_layers(module) if n not in config.exclude]
        if not self.names:
            raise ModelpressError("prune: every layer is excluded", "remove names from prune.exclude")
        self.masks = Masks(module, self.names)

    def layers(self) -> list[str]:
        return self.names

    def final_ratios(self) -> dict[str, float]:
        c = self.config
        if c.scope == "per_layer":
            return {n: c.layer_ratios.get(n, c.ratio or 0.0) for n in self.names}
        return dict(c.layer_ratios)  # the rest share one global threshold at `ratio`

    def prune_to(self, ratios: dict[str, float], global_ratio: float | None = None) -> None:
        self.masks.update(ratios, global_ratio)

    def after_step(self) -> None:
        self.masks.apply()

    def report(self) -> dict:
        return {"layer_sparsity": {k: round(v, 4) for k, v in counting.layer_sparsity(self.module).items()}}


class _Structured(_Pruner):
    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], config: PruneConfig) -> None:
        from modelpress.components.prune.structured import trace_groups

        super().__init__(module, input_shape, config)
        self.groups: list[Group] = trace_groups(module, input_shape, frozenset(config.exclude))
        self.original = {g.name: g.size for g in self.groups}
        self.by_layer = {p: g for g in self.groups for p in g.producers}
        for name in config.layer_ratios:
            g = self.by_layer.get(name)
            if g is None or g.protected:
                why = g.protected if g else "it consumes channels but produces none that can be removed"
                raise ModelpressError(
                    f"prune.layer_ratios: layer {name!r} cannot lose channels ({why})",
                    f"prunable layers: {', '.join(self.layers()) or 'none'}",
                )
        if not self.layers():
            raise ModelpressError(
                "structured pruning found no channels it may remove in this model",
                "every group feeds the output or is excluded; use prune.method: unstructured",
            )

    def layers(self) -> list[str]:
        return [g.name for g in self.groups if not g.protected]

    def final_ratios(self) -> dict[str, float]:
        c = self.config
        out = {}
        for g in self.groups:
            if g.protected:
                continue
            named = [c.layer_ratios[p] for p in g.producers if p in c.layer_ratios]
            out[g.name] = max(named) if named else (c.ratio or 0.0)
        return out

    def prune_to(self, ratios: dict[str, float], global_ratio: float | None = None) -> None:
        from modelpress.components.prune.structured import prune_groups

        keep = {
            name: max(1, round(self.original[name] * (1.0 - r))) for name, r in ratios.items()
        }
        prune_groups(self.module, self.groups, keep)

    def report(self) -> dict:
        return {
            "channels": {g.name: f"{self.original[g.name]}->{g.size}" for g in self.groups if not g.protected},
            "kept_whole": {g.name: g.protected for g in self.groups if g.protected},
        }


def _pruner(module: torch.nn.Module, shape: tuple[int, ...], config: PruneConfig) -> _Pruner:
    return (_Structured if config.method == "structured" else _Unstructured)(module, shape, config)


def _cost_fn(
    module: torch.nn.Module, shape: tuple[int, ...], plain: PruneConfig, objective: str
) -> Callable[[dict[str, float]], float]:
    """Cost of a model pruned at `ratios` (no fine-tuning), for the sensitivity search."""

    def cost(ratios: dict[str, float]) -> float:
        trial = copy.deepcopy(module)
        _pruner(trial, shape, plain).prune_to(ratios)
        if objective == "latency":
            return counting.ort_latency_ms(trial, shape, runs=30)
        if plain.method == "unstructured":  # zeros cost nothing in a sparse format
            return counting.nonzero_macs(trial, shape) if objective == "macs" else float(counting.count_nonzero(trial))
        if objective == "macs":
            return float(sum(counting.count_macs(trial, shape).values()))
        return float(counting.count_params(trial))

    return cost


def _choose_by_sensitivity(
    module: torch.nn.Module, shape: tuple[int, ...], data: DatasetSplits, config: PruneConfig,
    sens: SensitivityConfig,
) -> tuple[dict[str, float], dict]:
    from modelpress.components.prune import sensitivity
    from modelpress.models.train import accuracy

    plain = config.model_copy(update={"sensitivity": None, "layer_ratios": {}})
    baseline = accuracy(module, data.x_val, data.y_val)

    def probe(layer: str, ratio: float) -> float:
        trial = copy.deepcopy(module)
        _pruner(trial, shape, plain).prune_to({layer: ratio})
        return accuracy(trial, data.x_val, data.y_val)

    layers = _pruner(copy.deepcopy(module), shape, plain).layers()
    table = sensitivity.scan(layers, sens.ratios, probe, baseline, _say)
    chosen = sensitivity.choose(
        table, _cost_fn(module, shape, plain, sens.objective), sens.keep, sens.max_accuracy_drop, sens.objective,
    )
    _say(f"sensitivity chose {chosen or 'no pruning'} to keep {sens.objective} <= {sens.keep:.0%}")
    notes = {"table": {k: {str(r): round(d, 4) for r, d in v.items()} for k, v in table.items()},
             "chosen": chosen, "objective": sens.objective, "keep": sens.keep}
    return chosen, notes


def prune(
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    data: DatasetSplits,
    config: PruneConfig,
    say: Callable[[str], None] = _say,
) -> tuple[torch.nn.Module, dict[str, float], dict]:
    """Prune and fine-tune `module` in place; returns it with metrics and notes."""
    from modelpress.models.train import accuracy, distillation_loss, train

    loss = None
    if config.distill is not None:  # the unpruned model, frozen, is the teacher
        loss = distillation_loss(copy.deepcopy(module).eval(), config.distill.temperature, config.distill.alpha)
    before = counting.summary(module, input_shape)
    val_before = accuracy(module, data.x_val, data.y_val)
    notes: dict = {"config": config.model_dump(mode="json")}
    global_final = config.ratio if config.method == "unstructured" and config.scope == "global" else None
    if config.sensitivity is not None:
        final, notes["sensitivity"] = _choose_by_sensitivity(
            module, input_shape, data, config, config.sensitivity
        )
        pruner = _pruner(module, input_shape, config.model_copy(update={"sensitivity": None}))
        global_final = None
    else:
        pruner = _pruner(module, input_shape, config)
        final = pruner.final_ratios()
    steps = config.schedule.steps
    between = config.finetune.model_copy(
        update={"epochs": config.schedule.epochs_per_step, "patience": config.schedule.epochs_per_step + 1}
    )
    for step in range(1, steps + 1):
        step_ratios = {n: config.ratio_at(r, step) for n, r in final.items()}
        step_global = None if global_final is None else config.ratio_at(global_final, step)
        pruner.prune_to(step_ratios, step_global)
        val = accuracy(module, data.x_val, data.y_val)
        shown = step_global if step_global is not None else max(step_ratios.values(), default=0.0)
        say(f"prune step {step}/{steps}: ratio {shown:.3f}, val accuracy before fine-tuning {val:.4f}")
        if step == 1 and steps == 1:
            notes["val_accuracy_no_finetune"] = val
        if step < steps and between.epochs > 0:
            train(module, data, between, progress=lambda m: None, after_step=pruner.after_step, loss=loss)
    val_pruned = accuracy(module, data.x_val, data.y_val)
    say(f"fine-tuning up to {config.finetune.epochs} epochs (early stop on val)")
    train(module, data, config.finetune, progress=say, after_step=pruner.after_step, loss=loss)
    pruner.after_step()
    after = counting.summary(module, input_shape)
    metrics = {
        "params_before": before["params"],
        "params": after["params"],
        "params_ratio": after["params"] / before["params"],
        "nonzero_params": after["nonzero_params"],
        "nonzero_ratio": after["nonzero_params"] / before["nonzero_params"],
        "macs_before": before["macs"],
        "macs": after["macs"],
        "macs_ratio": after["macs"] / before["macs"],
        "val_accuracy_before": val_before,
        "val_accuracy_pruned": val_pruned,
        "val_accuracy": accuracy(module, data.x_val, data.y_val),
    }
    if config.method == "unstructured":
        metrics["macs_nonzero_ratio"] = counting.nonzero_macs(module, input_shape) / before["macs"]
        metrics["weight_sparsity"] = counting.weight_sparsity(module)
    notes.update(pruner.report())
    return module, metrics, notes


class Prune(Technique):
    """Magnitude pruning of a torch model: unstructured (sparse file) or structured (narrower model)."""

    name = "prune"
    Config = PruneConfig
    description = "Prune step; None: no pruning."
    input_format = "torch"
    section = "prune"
    component = "modelpress.components.prune.component:prune"

    def metrics(self, config: PruneConfig) -> tuple[str, ...]:  # type: ignore[override]
        if config.method == "heads":
            return HEAD_METRICS
        return METRICS + (UNSTRUCTURED_METRICS if config.method == "unstructured" else ())

    def needs_labels(self, config: PruneConfig) -> bool:  # type: ignore[override]
        return config.method != "heads"  # heads are ranked on embeddings, no labels

    def describe(self, result: Result) -> list[str]:
        m = result.metrics
        if "heads" in m:
            return [f"prune: heads {int(m['heads_before'])} -> {int(m['heads'])}, params {m['params_ratio']:.2f}x, "
                    f"file {m['file_ratio']:.2f}x; val cosine to the unpruned {m['val_cosine']:.4f}"]
        return [f"prune: params {m['params_ratio']:.2f}x, nonzero {m['nonzero_ratio']:.2f}x, MACs "
                f"{m['macs_ratio']:.2f}x, file {m['file_ratio']:.2f}x; val accuracy {m['val_accuracy_before']:.4f} "
                f"-> {m['val_accuracy']:.4f}"]

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: PruneConfig,  # type: ignore[override]
        target: HardwareTarget | None,
        out_dir: Path,
    ) -> Result:
        from modelpress.models.zoo import spec_of

        require_torch(model_dir, "prune")
        if config.method == "heads":
            return self._heads(model_dir, data, config, out_dir)
        if data is None or len(data.x_train) == 0 or len(data.x_val) == 0:
            raise ModelpressError("prune needs training and validation data to fine-tune, and has none")
        module, manifest = artifacts.load_torch(model_dir)
        shape = manifest.input.shape
        module, metrics, notes = prune(module, shape, data, config)
        arch = spec_of(manifest.architecture, module) if manifest.architecture is not None else None
        artifacts.save_like(out_dir, module, manifest, arch)
        size_before = artifacts.weights_bytes(model_dir)
        size_after = artifacts.weights_bytes(out_dir)
        metrics.update(file_bytes_before=float(size_before), file_bytes=float(size_after),
                       file_ratio=size_after / size_before)
        if arch is not None:
            notes["architecture"] = arch.model_dump(mode="json")
        return Result(model_dir=out_dir, metrics=metrics, notes=notes)

    def _heads(self, model_dir: Path, data: DatasetSplits | None, config: PruneConfig, out_dir: Path) -> Result:
        """Attention heads out of a transformers encoder, ranked on the validation split (no labels needed)."""
        from modelpress.components.prune.heads import prune_encoder

        module, manifest = artifacts.load_torch(model_dir)
        if manifest.format != "transformers":
            raise ModelpressError(
                f"prune.method heads removes attention heads of a transformers encoder, but the model is "
                f"{manifest.format}", "log the encoder with mlflow.transformers.log_model, or use method structured")
        if data is None or len(data.val) == 0 or set(data.val.inputs) != {"input_ids", "attention_mask"}:
            raise ModelpressError("prune.method heads ranks heads on the validation split's input_ids and "
                                  "attention_mask, and the data has none", "give the run tokenized data (data.uri)")
        if manifest.heads_removed:
            raise ModelpressError("this encoder has had heads removed already", "prune heads once, from the source")
        chosen, metrics = prune_encoder(module, data.val.inputs, config.ratio or 0.0, _say)
        # Block indices of find_blocks (encoder layer order), replayed when the folder is loaded.
        artifacts.save_like(out_dir, module, manifest.model_copy(
            update={"heads_removed": {k: tuple(v) for k, v in chosen.items()}}))
        before, after = artifacts.weights_bytes(model_dir), artifacts.weights_bytes(out_dir)
        metrics.update(file_bytes_before=float(before), file_bytes=float(after), file_ratio=after / before)
        notes = {"config": config.model_dump(mode="json"),
                 "heads_removed": {f"layer {k}": v for k, v in chosen.items()}}
        return Result(model_dir=out_dir, metrics=metrics, notes=notes)
