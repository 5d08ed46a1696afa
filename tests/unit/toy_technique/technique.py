"""Round every weight to a few decimals: a technique small enough to read at a glance."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.core.technique import Result, Technique


class ToyConfig(FrozenConfig):
    decimals: int = Field(default=2, ge=0, le=8, description="Decimals every weight keeps.")


class Toy(Technique):
    name = "toy"
    Config = ToyConfig
    description = "Round weights (a test's toy technique); None: off."
    input_format = "torch"
    section = "toy"
    component = "tests.unit.toy_technique.component:toy"
    METRICS = ("weights_changed",)

    def apply(self, model_dir, data, config, target, out_dir: Path) -> Result:  # type: ignore[override]
        import torch

        from modelpress.core import artifacts

        module, manifest = artifacts.load_torch(model_dir)
        changed = 0
        with torch.no_grad():
            for p in module.parameters():
                rounded = torch.round(p, decimals=config.decimals)
                changed += int((rounded != p).sum())
                p.copy_(rounded)
        artifacts.save_like(out_dir, module, manifest)
        return Result(model_dir=out_dir, metrics={"weights_changed": float(changed)})
