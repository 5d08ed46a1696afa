"""The per-target quantize step: ONNX Runtime quantization for the target, or a pass-through for fp32."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from modelpress.core.artifacts import read_notes, write_notes
from modelpress.core.progress import for_target, say


def tune_context(evaluate_json: str, gates_json: str, baseline: Path | None) -> Any:
    """What tuning measures against: the source, the recipe's gates and the evaluate step's batch sizes."""
    from modelpress.components.evaluate.measure import EvaluateConfig
    from modelpress.components.gate.step import GateConfig
    from modelpress.components.quantize.tune import TuneContext
    from modelpress.core.config import parse_config

    evaluate = parse_config(EvaluateConfig, evaluate_json, "evaluate")
    return TuneContext(baseline=baseline, gates=GateConfig.from_sections(gates_json, "{}").gates,
                       batch_size=max(evaluate.batch_sizes), threads=evaluate.threads, say=say)


def quantize_step(config_json: str, target: str, model_in: Path, dataset: Path | None,
                  model_out: Path, baseline: Path | None = None, evaluate_json: str = "{}",
                  gates_json: str = "null") -> dict[str, float]:
    from modelpress.components.technique_step import apply_technique, parse_section
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    for_target(target)
    technique = get_technique("quantize")
    if not technique.applies_to(parse_target(target)):
        shutil.copytree(model_in, model_out, dirs_exist_ok=True)
        say(f"quantize: none for the fp32 target {target}; the model passes through")
        return {}
    config = parse_section(technique, config_json)
    tuning = None if config.tune is None else tune_context(evaluate_json, gates_json, baseline)
    result = apply_technique("quantize", config, model_in, dataset, model_out, target=target, tuning=tuning)
    write_notes(Path(model_out), {**read_notes(Path(model_in)), "quantize": result.notes})
    notes = result.notes
    say(f"quantize: mode {notes['settings']['mode']}, size {result.metrics['size_ratio']:.2f}x of source")
    if "quantized_by_op" in notes:
        say(f"quantized: {notes['quantized_by_op']}; stayed float: {len(notes['stayed_float'])}")
        for node, why in list(notes["stayed_float"].items())[:10]:
            say(f"  float: {node}: {why}")
    elif "fp16_initializers" in notes:
        say(f"fp16 initializers: {notes['fp16_initializers']}, fp32 left: {notes['fp32_initializers']}")
    return result.metrics
