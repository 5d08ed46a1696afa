"""From a trial's choices to an architecture spec, and back to a stable key.

Every trial samples the same fixed-length genome (a width and a kernel per possible layer),
and the first `depth` layers are used: NSGA-II's crossover and mutation then work on one
search space instead of a different one per depth.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from modelpress.components.nas.settings import SearchSpace
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """The trial's choices, as Optuna parameters."""
    params: dict[str, Any] = {"depth": trial.suggest_int("depth", space.depth.min, space.depth.max)}
    for i in range(space.depth.max):
        params[f"width_{i}"] = trial.suggest_categorical(f"width_{i}", list(space.widths))
        if space.family == "digits-cnn":
            params[f"kernel_{i}"] = trial.suggest_categorical(f"kernel_{i}", list(space.kernels()))
    if space.family == "digits-cnn":
        params["hidden"] = trial.suggest_categorical("hidden", list(space.hidden))
        params["skip"] = trial.suggest_categorical("skip", list(space.skips()))
        params["head"] = trial.suggest_categorical("head", list(space.head_choices()))
    params["activation"] = trial.suggest_categorical("activation", list(space.activations))
    return params


def spec_from(params: dict[str, Any], space: SearchSpace, num_classes: int,
              input_shape: tuple[int, ...]) -> DigitsCNNSpec | MLPSpec:
    depth = int(params["depth"])
    widths = tuple(int(params[f"width_{i}"]) for i in range(depth))
    if space.family == "digits-cnn":
        return DigitsCNNSpec(channels=widths, kernels=tuple(int(params[f"kernel_{i}"]) for i in range(depth)),
                             hidden=int(params["hidden"]), activation=params["activation"],
                             residual=bool(params["skip"]), head=params["head"], num_classes=num_classes)
    return MLPSpec(in_features=math.prod(input_shape), hidden=widths, activation=params["activation"],
                   num_classes=num_classes)


def params_of(spec: DigitsCNNSpec | MLPSpec, space: SearchSpace) -> dict[str, Any]:
    """The Optuna parameters that give `spec` (to enqueue a hand-made architecture as a trial)."""
    widths = spec.channels if isinstance(spec, DigitsCNNSpec) else spec.hidden
    params: dict[str, Any] = {"depth": len(widths), "activation": spec.activation}
    for i in range(space.depth.max):
        params[f"width_{i}"] = widths[i] if i < len(widths) else space.widths[0]
        if isinstance(spec, DigitsCNNSpec):
            params[f"kernel_{i}"] = spec.kernel(i) if i < len(widths) else space.kernels()[0]
    if isinstance(spec, DigitsCNNSpec):
        params.update(hidden=spec.hidden, skip=spec.residual, head=spec.head)
    return params


def arch_key(spec: DigitsCNNSpec | MLPSpec) -> str:
    """Same architecture, same key: what latency is cached on (weights do not change it)."""
    body = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]
