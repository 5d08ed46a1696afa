"""Parsing `models:/<name>@<alias>` and `models:/<name>/<version>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelpress.errors import ModelpressError
from modelpress.registry.names import check_model_name

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelUri:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(text: str) -> ModelUri:
    m = _URI.match(text.strip())
    if not m:
        raise ModelpressError(
            f"{text!r} is not a registry model URI",
            "use models:/<name>@<alias> or models:/<name>/<version>",
        )
    check_model_name(m["name"])
    return ModelUri(m["name"], m["alias"], m["version"])
