"""Deep compression end to end on the digits MLP: three stages, a real file, an exact decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelpress.components.deep_compress.deep_compress import COMPRESSED_FILE, decode_model
from modelpress.components.deep_compress.settings import METRICS, DeepCompressConfig
from modelpress.core import artifacts
from modelpress.core.config import parse_config
from modelpress.core.data import load_dataset
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique
from modelpress.errors import ModelpressError
from modelpress.models.train import TrainConfig, train
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model

QUICK = {"prune": {"method": "unstructured", "ratio": 0.9, "schedule": {"steps": 2, "epochs_per_step": 1},
                   "finetune": {"epochs": 3}},
         "centroids": {"epochs": 2}}


@pytest.fixture(scope="module")
def data():
    return load_dataset("sklearn-digits")


@pytest.fixture(scope="module")
def compressed(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dc")
    module = build_model(MLPSpec(), seed=0)
    train(module, data, TrainConfig(epochs=10), progress=lambda s: None)
    src = artifacts.save_torch(tmp / "src", module, MLPSpec(), artifacts.TensorSpec(shape=(1, 8, 8)), "sklearn-digits")
    cfg = parse_config(DeepCompressConfig, QUICK, "deep_compress")
    return get_technique("deep_compress").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp / "out")


def test_stages_are_measured_on_the_real_file(compressed):
    rows = compressed.notes["stages"]
    assert [r["stage"].split(" ")[0] for r in rows] == ["FP32", "pruned", "shared", "Huffman-coded"]
    assert rows[-1]["bytes"] == (compressed.model_dir / COMPRESSED_FILE).stat().st_size
    assert rows[0]["bytes"] == 4 * 50_610
    assert [r["ratio"] for r in rows] == sorted(r["ratio"] for r in rows)  # each stage shrinks it
    assert compressed.metrics["compression_ratio"] > 20
    assert set(compressed.metrics) == set(METRICS)  # what gates may name, checked at recipe load
    # The decoded model is the shared model: the last two stages score the same.
    assert rows[-1]["test_accuracy"] == rows[-2]["test_accuracy"]


def test_round_trip_gives_identical_weights_and_predictions(compressed, data):
    blob = (compressed.model_dir / COMPRESSED_FILE).read_bytes()
    decoded = decode_model(blob)
    saved, _ = artifacts.load_torch(compressed.model_dir)
    for k, v in saved.state_dict().items():
        assert decoded.state_dict()[k].numpy().tobytes() == v.numpy().tobytes(), k
    x = torch.from_numpy(data.x_test)
    assert torch.equal(decoded(x), saved(x))
    assert len(np.unique(decoded[1].weight.detach().numpy())) <= 2**5 + 1  # 5-bit codebook (+ zero)


def test_damaged_files_are_refused_with_one_line(compressed):
    blob = (compressed.model_dir / COMPRESSED_FILE).read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 3] ^= 0x10
    with pytest.raises(ModelpressError, match="checksum mismatch: the file is corrupt") as exc:
        decode_model(bytes(flipped), "model.mpdc")
    assert "\n" not in str(exc.value)
    with pytest.raises(ModelpressError, match="truncated"):
        decode_model(blob[:-10])
    future = bytearray(blob)
    future[4] = 9
    with pytest.raises(ModelpressError, match="unknown format version 9"):
        decode_model(bytes(future))


def test_cnn_folds_batchnorm_and_rejects_structured_prune(data, tmp_path):
    with pytest.raises(ModelpressError, match="must be unstructured"):
        parse_config(DeepCompressConfig, {"prune": {"method": "structured", "ratio": 0.5}}, "deep_compress")
    module = build_model(DigitsCNNSpec(), seed=0)
    train(module, data, TrainConfig(epochs=3), progress=lambda s: None)
    src = artifacts.save_torch(tmp_path / "src", module, DigitsCNNSpec(), artifacts.TensorSpec(shape=(1, 8, 8)))
    cfg = parse_config(DeepCompressConfig, {**QUICK, "bits": {"conv": 4, "linear": 4}}, "deep_compress")
    r = get_technique("deep_compress").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "out")
    assert artifacts.read_manifest(r.model_dir).architecture.batchnorm is False
    decoded = decode_model((r.model_dir / COMPRESSED_FILE).read_bytes())
    saved, _ = artifacts.load_torch(r.model_dir)
    x = torch.from_numpy(data.x_test)
    assert torch.equal(decoded(x), saved(x))


def test_a_crafted_header_declaring_huge_tensors_is_refused_before_allocating(compressed):
    """A valid checksum over a header that asks for a 4-billion-weight MLP: refused from the shapes alone."""
    import tracemalloc

    from modelpress.components.deep_compress import container

    blob = (compressed.model_dir / COMPRESSED_FILE).read_bytes()
    seen = {}

    def keep_meta(meta: dict) -> list:
        seen.update(meta)
        raise ValueError("only the meta was wanted")

    with pytest.raises(container.FormatError):
        container.decode(blob, keep_meta)
    huge = {**seen, "architecture": {"family": "mlp", "in_features": 65536, "hidden": [65536] * 8}}
    crafted, _ = container.encode(container.Bundle(meta=huge))
    tracemalloc.start()
    with pytest.raises(ModelpressError, match="declares .* weights, more than a .*-byte file can hold"):
        decode_model(crafted, "crafted.mpdc")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # nothing near the 16 GiB the header asks for
