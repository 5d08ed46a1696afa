"""One registration client, run as its own process by the concurrency tests.

    python -m tests.integration.registry_worker URI SOURCE_JSON MODEL_DIR TARGET CONFIG_HASH GO_FILE

Connects, waits until GO_FILE exists (so all clients hit the store at once), registers,
and prints the result as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    uri, source_json, model_dir, target, config_hash, go = argv
    from modelpress.core.hardware import parse_target
    from modelpress.registry.source import SourceRef
    from modelpress.registry.store import connect
    from modelpress.registry.variants import register_variant

    client = connect(uri)
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.01)
    ref = register_variant(
        client,
        source=SourceRef(**json.loads(source_json)),
        model_dir=Path(model_dir),
        target=parse_target(target),
        chain=["export_onnx", "quantize"],
        config_hash=config_hash,
        metrics={"accuracy": 0.97, "source_accuracy": 0.98, "size_ratio": 0.3},
        verdict={"passed": True, "reason": "all gates passed", "results": []},
        pipeline_run_id=f"conc-{target}-{config_hash}",
    )
    print(json.dumps({"name": ref.name, "version": ref.version, "created": ref.created, "target": target,
                      "config_hash": config_hash}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
