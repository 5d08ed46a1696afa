"""No phoning home: the usage telemetry of the libraries modelpress runs is off in its processes.

Pipeline tasks often run without egress, and a platform team's model and data names are its own.
ONNX Runtime (1DS telemetry on Linux in recent releases, whose offline cache is a `.ses` file in
TMPDIR), MLflow and Great Expectations each read an opt-out variable at start-up. The CLI sets
them, its local tasks inherit them, and the component image sets them for cluster tasks; a value
the user already set is kept.
"""

from __future__ import annotations

import os

OPT_OUTS = {"ORT_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}


def opt_out() -> dict[str, str]:
    """Set every opt-out not already set; returns the values in force (for a container's environment)."""
    for key, value in OPT_OUTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in OPT_OUTS}
