"""Model folders and ONNX export, on a small untrained CNN (no registry)."""

from pathlib import Path

import numpy as np
import pytest

from modelpress.components.export_onnx.onnx_export import export_onnx
from modelpress.core import artifacts
from modelpress.core.technique import get_technique, known_techniques
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model


@pytest.fixture()
def torch_dir(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    module = build_model(DigitsCNNSpec())
    module.eval()
    return artifacts.save_torch(tmp_path / "torch", module, DigitsCNNSpec(),
                                artifacts.TensorSpec(shape=(1, 8, 8)), dataset="sklearn-digits")


def test_torch_folder_round_trip(torch_dir: Path):
    import torch

    module, manifest = artifacts.load_torch(torch_dir)
    assert manifest.architecture == DigitsCNNSpec() and manifest.dataset == "sklearn-digits"
    x = torch.rand(3, 1, 8, 8)
    again, _ = artifacts.load_torch(torch_dir)
    assert torch.equal(module(x), again(x))


def test_weights_file_is_not_a_pickle(torch_dir: Path):
    # np.load with allow_pickle=False refuses object arrays: nothing executable can hide there.
    with np.load(torch_dir / artifacts.WEIGHTS_FILE, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_mlp_builds():
    import torch

    m = build_model(MLPSpec())
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert sum(p.numel() for p in m.parameters()) == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def test_export_matches_torch(torch_dir: Path, tmp_path: Path):
    import onnxruntime as ort
    import torch

    out = export_onnx(torch_dir, tmp_path / "onnx")
    module, _ = artifacts.load_torch(torch_dir)
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    sess = ort.InferenceSession(str(artifacts.onnx_file(out)), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, module(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_corrupt_onnx_is_one_line_error(tmp_path: Path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-a-protobuf" * 10)
    with pytest.raises(ModelpressError) as exc:
        artifacts.check_onnx(bad, "models:/x/1")
    assert "models:/x/1: ONNX file is corrupt or invalid" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_folder_without_manifest(tmp_path: Path):
    with pytest.raises(ModelpressError, match="not a modelpress model folder"):
        artifacts.read_manifest(tmp_path)


def test_unknown_technique():
    assert "quantize" in known_techniques()
    with pytest.raises(ModelpressError, match="unknown technique 'sparsify'"):
        get_technique("sparsify")
