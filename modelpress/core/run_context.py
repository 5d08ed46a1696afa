"""Who a pipeline run works for: the few facts every recording step needs besides its own section.

The register, gate and training steps tag what they write with the source URI and the recipe's
config hash (the variant key's parts); resolve needs to know whether a pickled source may be
loaded; the gate step needs the objective and batch size its default latency gate holds. These travel as one small typed parameter instead of the whole recipe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelpress.core.config import FrozenConfig, parse_config


class RunContext(FrozenConfig):
    source: str = Field(description="The recipe's source URI, as written (models:/name@alias or /version).")
    config_hash: str = Field(pattern=r"^[0-9a-f]{16}$", description="Recipe.config_hash(): the variant key's recipe part.")
    trust_pickled_source: bool = Field(default=False, description="The recipe's trust_pickled_source.")
    recipe: str = Field(default="default", max_length=64, description="The recipe's name, tagged on its variants.")
    objective: Literal["latency", "size"] = Field(default="latency", description="The recipe's objective.")
    latency_batch: Annotated[int, Field(ge=1, le=65536)] = Field(
        default=64, description="The evaluate step's largest batch size: where the default latency gate measures.")


def parse_run(run_json: str) -> RunContext:
    return parse_config(RunContext, run_json, "run context")
