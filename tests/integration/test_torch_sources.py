"""Your torch model: the README's commands as written, then pickles refused unless trusted.

The models are none of modelpress's catalog: examples/byom/torch_models.py trains them and logs
them with plain `mlflow.pytorch.log_model` calls (MLflow 3's torch.export default, or a pickle).
"""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, run_readme_script
from tests.integration.test_bad_input import assert_refused, registry_state
from tests.integration.test_byom import _metric, _versions, readme_commands

pytestmark = [pytest.mark.integration, pytest.mark.long]
SECTION = "## Bring your own torch model"


@pytest.fixture(scope="module")
def torch_byom(server_env, tmp_path_factory):
    """Run the README section's commands once (five sources, seven variants)."""
    script = readme_commands(SECTION)
    assert script.count("modelpress run") == 7
    return run_readme_script(script, server_env, tmp_path_factory.mktemp("torch-byom"))


def _note(mv, key: str) -> dict:
    return json.loads(mv.tags[f"modelpress.note.{key}"])


def test_tabular_mlp_prunes_deep_compresses_distills_and_quantizes_after_qat(torch_byom, client):
    pruned, packed, distilled = _versions(client, "digits-torch-mlp.cpu-x86-fp32")
    assert pruned.tags["modelpress.chain"].startswith("prune>")
    assert _metric(pruned, "prune_params_ratio") <= 0.6 and _metric(pruned, "accuracy_delta") >= -0.01
    assert "deep_compress" in packed.tags["modelpress.chain"]
    assert _metric(packed, "deep_compress_compression_ratio") >= 20
    assert _metric(packed, "accuracy_delta") >= -0.005
    (qat,) = _versions(client, "digits-torch-mlp.cpu-x86-int8")
    assert "qat" in qat.tags["modelpress.chain"] and _metric(qat, "accuracy_delta") >= -0.01
    # Distilled into the registered digits-torch-mlp-small, from its own weights (3,610 parameters).
    assert _note(distilled, "distill")["student"] == {"model": "models:/digits-torch-mlp-small@champion",
                                                      "version": "models:/digits-torch-mlp-small/1"}
    assert _metric(distilled, "distill_student_params") == 3610
    assert _metric(distilled, "accuracy_delta") >= -0.015
    for mv in (pruned, packed, qat, distilled):  # how the source was read travels to every variant
        assert _note(mv, "source") == {"format": "mlflow.pytorch torch.export program (pt2)", "unpickled": False}


def test_residual_cnn_with_a_concatenation_gets_faster_at_batch_64(torch_byom, client):
    (mv,) = _versions(client, "digits-resnet.cpu-x86-fp32")
    assert _metric(mv, "latency_ratio_b64") < 1.0
    assert _metric(mv, "accuracy_delta") >= -0.01
    assert _metric(mv, "prune_macs_ratio") <= 0.5


def test_transformers_encoder_loses_heads_then_quantizes(torch_byom, client):
    (mv,) = _versions(client, "minilm-hf.cpu-x86-int8")
    assert mv.tags["modelpress.chain"] == "prune>export_onnx>quantize"
    assert _metric(mv, "prune_heads") == 54 and _metric(mv, "prune_heads_before") == 72
    assert _metric(mv, "cosine_mean") >= 0.95 and _metric(mv, "size_ratio") <= 0.30
    assert _note(mv, "source")["format"] == "mlflow.transformers BertModel (safetensors)"
    assert sum(len(h) for h in _note(mv, "prune")["heads_removed"].values()) == 18


def test_trusted_pickle_compresses_and_says_so(torch_byom, client):
    (mv,) = _versions(client, "digits-mlp-pickled.cpu-x86-int8")
    note = _note(mv, "source")
    assert note["unpickled"] is True and "--trust-pickled-source" in note["trusted_by"]


def _log_booby_trapped_pickle(tracking_uri: str, marker: Path, name: str) -> None:
    """A torch module whose unpickling writes `marker`: what a tampered registry entry could do."""
    import mlflow
    import numpy as np
    import torch

    class Trap(torch.nn.Linear):
        def __reduce_ex__(self, protocol):
            return (pathlib.Path.write_text, (marker, "unpickled"))

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        mlflow.pytorch.log_model(Trap(64, 10), name="model", serialization_format="pickle",
                                 input_example=np.zeros((2, 64), np.float32), registered_model_name=name)
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")
    marker.unlink(missing_ok=True)  # MLflow itself loads the model back while logging it


def test_pickle_is_refused_without_the_opt_in_and_nothing_runs(torch_byom, mlflow_server, server_env, client,
                                                              tmp_path):
    marker = tmp_path / "pwned"
    _log_booby_trapped_pickle(mlflow_server[0], marker, "trapped")
    before = registry_state(client)
    # The refusal comes from the resolve task, before data is read or anything is unpickled.
    proc = run_cli(["run", "--source", "models:/trapped@champion", "--recipe", str(REPO / "recipes/dynamic-int8.yaml")],
                   server_env)
    assert_refused(proc, "is a pickled torch module")
    assert "--trust-pickled-source" in proc.stderr and "trust_pickled_source: true" in proc.stderr
    assert not marker.exists()
    assert registry_state(client) == before


def test_crafted_pt2_archive_is_refused_before_loading(tmp_path):
    """A .pt2 whose example-input record is a pickle naming a function: refused, nothing runs."""
    import io
    import pickle
    import zipfile

    import torch

    from modelpress.errors import ModelpressError
    from modelpress.models.program import check_pickle_free, load_program

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.write_text, (marker, "unpickled"))

    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(2, 4),)), str(good))
    check_pickle_free(good, "good")  # an honest archive passes
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil()))
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, inner.getvalue() if "sample_inputs" in name else src.read(name))
    with pytest.raises(ModelpressError, match="references pathlib") as exc:
        load_program(bad, "models:/x/1")
    assert "serialization_format='pt2'" in exc.value.fix
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.pt2", "good.pt2"]
