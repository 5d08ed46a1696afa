"""deep_compress through the real pipeline: the compressed file registered beside its decoded ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

RECIPE = (
    "evaluate:\n  latency_runs: 20\n  warmup_runs: 2\n"
    "target: cpu-x86-fp32\nvariant: {alias: deep-compressed}\n"
    "deep_compress:\n"
    "  prune: {method: unstructured, ratio: 0.85, schedule: {steps: 2, epochs_per_step: 2}, finetune: {epochs: 10}}\n"
    "  bits: {conv: 4, linear: 4}\n  centroids: {epochs: 3}\n"
    "gates:\n"
    "  - {metric: accuracy, change: {max_degradation: 0.15}}\n"  # plumbing, not quality: see the benchmark
    "  - {metric: deep_compress_compression_ratio, value: {lower: 10}}\n"
)


def test_deep_compressed_variant_carries_its_file(demo_source, server_env, client, mlflow_server, tmp_path):
    recipe = tmp_path / "dc.yaml"
    recipe.write_text(RECIPE)
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deep_compress: Huffman-coded file" in proc.stderr
    mv = client.get_model_version_by_alias("digits-cnn.cpu-x86-fp32", "deep-compressed")
    assert mv.tags["modelpress.chain"] == "deep_compress>export_onnx"
    assert float(mv.tags["modelpress.metric.deep_compress_compression_ratio"]) > 10

    import mlflow

    from modelpress.components.deep_compress.deep_compress import decode_model

    uri, _ = mlflow_server
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/digits-cnn.cpu-x86-fp32/{mv.version}",
                                                    dst_path=str(tmp_path / "dl")))
    blob = next(local.rglob("model.mpdc")).read_bytes()
    assert len(blob) == int(float(mv.tags["modelpress.metric.deep_compress_compressed_bytes"]))
    decoded = decode_model(blob)
    served = mlflow.pyfunc.load_model("models:/digits-cnn.cpu-x86-fp32@deep-compressed")
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    out = served.predict(x)
    logits = np.asarray(out["logits"] if isinstance(out, dict) else out)
    import torch

    assert np.allclose(decoded(torch.from_numpy(x)).detach().numpy(), logits, atol=1e-4)


@pytest.mark.parametrize("body, named", [
    ("target: cpu-x86-int8\ndeep_compress: {}\n", "use an fp32 target"),
    ("target: cpu-x86-fp32\ndeep_compress: {}\nprune: {method: unstructured, ratio: 0.5}\n",
     "move the prune settings to deep_compress.prune"),
])
def test_bad_deep_compress_recipes_are_refused(server_env, tmp_path, body, named):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(body)
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2
    assert named in proc.stderr.strip().splitlines()[-1]
