"""Pruning config, unstructured masks, the sparse weights file, sensitivity, and the technique end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelpress.components.export_onnx.onnx_export import export_onnx
from modelpress.components.prune import counting, sensitivity
from modelpress.components.prune import settings as prune_settings
from modelpress.components.prune.settings import PruneConfig
from modelpress.components.prune.unstructured import Masks
from modelpress.core import artifacts
from modelpress.core.config import parse_config
from modelpress.core.data import load_dataset
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model

QUICK = {"schedule": {"steps": 2, "epochs_per_step": 1}, "finetune": {"epochs": 2}}


@pytest.fixture(scope="module")
def data():
    return load_dataset("sklearn-digits")


def _save(tmp_path: Path, spec, shape) -> Path:
    return artifacts.save_torch(tmp_path / "src", build_model(spec, seed=0), spec,
                                artifacts.TensorSpec(shape=shape), "sklearn-digits")


@pytest.mark.parametrize("bad, named", [
    ({"method": "structured", "ratio": 1.0}, "ratio 1.0 is outside [0, 1)"),
    ({"method": "structured", "ratio": -0.1}, "ratio -0.1 is outside [0, 1)"),
    ({"method": "unstructured", "layer_ratios": {"fc1": 1.5}}, "layer 'fc1' ratio 1.5 is outside [0, 1)"),
    ({"method": "unstructured"}, "set `ratio`, `layer_ratios` or `sensitivity`"),
    ({"method": "structural", "ratio": 0.5}, "method"),
    ({"method": "structured", "ratio": 0.5, "sensitivity": {"keep": 0.5}}, "drop `ratio`"),
])
def test_config_errors_name_the_value(bad, named):
    with pytest.raises(ModelpressError) as exc:
        parse_config(PruneConfig, bad, "recipe.prune")
    assert named in str(exc.value) and "\n" not in str(exc.value)


def test_polynomial_schedule():
    cfg = PruneConfig(method="unstructured", ratio=0.8, schedule={"steps": 4})
    got = [cfg.ratio_at(0.8, t) for t in range(1, 5)]
    assert got == pytest.approx([0.8 * (1 - 0.75**3), 0.8 * (1 - 0.5**3), 0.8 * (1 - 0.25**3), 0.8])
    assert got == sorted(got)  # fast early, slow late (Zhu & Gupta)


def test_global_and_per_layer_masks():
    model = build_model(MLPSpec(), seed=0)
    masks = Masks(model, ["1", "3", "5"])
    masks.update({}, global_ratio=0.9)
    sparsity = counting.layer_sparsity(model)
    total = sum(m.weight.numel() for m in counting.weight_layers(model).values())
    zeros = sum(sparsity[n] * m.weight.numel() for n, m in counting.weight_layers(model).items())
    assert zeros / total == pytest.approx(0.9, abs=1e-4)
    assert len(set(round(s, 2) for s in sparsity.values())) > 1  # one threshold, uneven layers
    model = build_model(MLPSpec(), seed=0)
    Masks(model, ["1", "3", "5"]).update({"1": 0.5, "3": 0.5, "5": 0.5}, None)
    assert all(s == pytest.approx(0.5, abs=1e-3) for s in counting.layer_sparsity(model).values())


def test_sparse_weights_file_is_smaller_and_exact(tmp_path):
    spec = MLPSpec()
    model = build_model(spec, seed=0)
    dense = artifacts.save_torch(tmp_path / "dense", model, spec, artifacts.TensorSpec(shape=(64,)))
    Masks(model, ["1", "3", "5"]).update({}, global_ratio=0.9)
    sparse = artifacts.save_torch(tmp_path / "sparse", model, spec, artifacts.TensorSpec(shape=(64,)))
    manifest = artifacts.read_manifest(sparse)
    assert set(manifest.sparse) == {"1.weight", "3.weight", "5.weight"}
    ratio = (sparse / "weights.npz").stat().st_size / (dense / "weights.npz").stat().st_size
    assert ratio < 0.2  # 10% values + 1 bit per weight (+ dense biases and npz headers)
    loaded, _ = artifacts.load_torch(sparse)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_corrupt_sparse_weights_are_refused(tmp_path):
    spec = MLPSpec()
    model = build_model(spec, seed=0)
    Masks(model, ["1"]).update({"1": 0.9}, None)
    out = artifacts.save_torch(tmp_path / "m", model, spec, artifacts.TensorSpec(shape=(64,)))
    with np.load(out / "weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["1.weight.nz"] = arrays["1.weight.nz"][:-3]  # values and mask disagree
    np.savez(out / "weights.npz", **arrays)
    with pytest.raises(ModelpressError, match="corrupt or do not match"):
        artifacts.load_torch(out)


def test_choose_meets_the_target_cheapest_first():
    table = {"a": {0.5: 0.01, 0.75: 0.3}, "b": {0.5: 0.001, 0.75: 0.002}}
    sizes = {"a": 100.0, "b": 100.0}

    def cost(r):
        return sum(sizes[k] * (1 - r.get(k, 0.0)) for k in sizes)

    assert sensitivity.choose(table, cost, keep=0.75, max_drop=0.1, objective="params") == {"b": 0.5}
    assert sensitivity.choose(table, cost, keep=0.5, max_drop=0.1, objective="params") == \
        {"a": 0.5, "b": 0.75}
    with pytest.raises(ModelpressError, match="no per-layer ratios keep params at or below 20%"):
        sensitivity.choose(table, cost, keep=0.2, max_drop=0.1, objective="params")


def test_structured_technique_end_to_end(tmp_path, data):
    src = _save(tmp_path, DigitsCNNSpec(), (1, 8, 8))
    cfg = parse_config(PruneConfig, {"method": "structured", "ratio": 0.5, **QUICK}, "prune")
    r = get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "out")
    assert r.metrics["macs_ratio"] <= 0.55 and r.metrics["file_ratio"] < 0.5
    assert set(r.metrics) == set(prune_settings.METRICS)  # what gates may name, checked at recipe load
    assert r.notes["channels"] == {"0": "16->8", "4": "32->16", "9": "64->32"}
    assert artifacts.read_manifest(r.model_dir).architecture == DigitsCNNSpec(channels=(8, 16), hidden=32)
    # The pruned model exports to ONNX and runs in ONNX Runtime with the same predictions.
    import onnxruntime as ort

    onnx_dir = export_onnx(r.model_dir, tmp_path / "onnx")
    sess = ort.InferenceSession(str(artifacts.onnx_file(onnx_dir)), providers=["CPUExecutionProvider"])
    module, _ = artifacts.load_torch(r.model_dir)
    x = data.x_test[:32]
    ort_pred = sess.run(None, {"input": x})[0].argmax(1)
    assert (ort_pred == module(torch.from_numpy(x)).argmax(1).numpy()).all()


def test_unstructured_technique_keeps_zeros_through_finetuning(tmp_path, data):
    src = _save(tmp_path, MLPSpec(), (64,))
    cfg = parse_config(PruneConfig, {"method": "unstructured", "ratio": 0.9, **QUICK}, "prune")
    r = get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "out")
    assert r.metrics["weight_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert set(r.metrics) == set(prune_settings.METRICS + prune_settings.UNSTRUCTURED_METRICS)
    assert r.metrics["file_ratio"] < 0.2
    module, _ = artifacts.load_torch(r.model_dir)
    assert counting.layer_sparsity(module) == pytest.approx(r.notes["layer_sparsity"], abs=1e-4)


def test_unknown_layer_names_list_the_known_ones(tmp_path, data):
    src = _save(tmp_path, MLPSpec(), (64,))
    cfg = PruneConfig(method="unstructured", ratio=0.5, layer_ratios={"fc9": 0.5})
    with pytest.raises(ModelpressError, match="no Conv2d, Linear or Embedding layer named 'fc9'") as exc:
        get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "o")
    assert exc.value.fix == "use one of: 1, 3, 5"
    cfg = PruneConfig(method="structured", ratio=0.5, layer_ratios={"5": 0.5})
    with pytest.raises(ModelpressError, match="layer '5' cannot lose channels .feeds the model output"):
        get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "o")


def test_sensitivity_picks_ratios_that_meet_the_macs_target(tmp_path, data):
    src = _save(tmp_path, DigitsCNNSpec(), (1, 8, 8))
    cfg = parse_config(PruneConfig, {
        "method": "structured", "sensitivity": {"objective": "macs", "keep": 0.5, "max_accuracy_drop": 1.0},
        **QUICK}, "prune")
    r = get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "out")
    assert r.metrics["macs_ratio"] <= 0.5
    assert set(r.notes["sensitivity"]["table"]) == {"0", "4", "9"}
    assert r.notes["sensitivity"]["chosen"]


def test_latency_objective_times_each_candidate(tmp_path, data, monkeypatch):
    """The latency objective asks ONNX Runtime for every candidate; here a stand-in clock
    proportional to MACs keeps the unit test fast and deterministic."""
    calls = []

    def fake_latency(module, shape, runs=30):
        calls.append(module)
        return float(sum(counting.count_macs(module, shape).values()))

    monkeypatch.setattr(counting, "ort_latency_ms", fake_latency)
    src = _save(tmp_path, DigitsCNNSpec(), (1, 8, 8))
    cfg = parse_config(PruneConfig, {
        "method": "structured", "sensitivity": {"objective": "latency", "keep": 0.6, "max_accuracy_drop": 1.0},
        **QUICK}, "prune")
    r = get_technique("prune").apply(src, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "out")
    assert calls and r.metrics["macs_ratio"] <= 0.6
    unstructured = {"method": "unstructured", "sensitivity": {"objective": "latency", "keep": 0.5}}
    with pytest.raises(ModelpressError, match="objective latency needs method structured"):
        parse_config(PruneConfig, unstructured, "recipe.prune")


def test_embedding_weights_are_pruned_and_shared_like_any_layer():
    """Unstructured pruning and deep compression's weight sharing cover Embedding tables too."""
    from torch import nn

    from modelpress.components.deep_compress.sharing import freeze, share

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.fc = nn.Linear(16, 4)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(1))

    torch.manual_seed(0)
    model = Bag()
    layers = list(counting.weight_layers(model))
    assert layers == ["emb", "fc"]
    masks = Masks(model, layers)
    masks.update({}, 0.9)
    assert float((model.emb.weight == 0).float().mean()) > 0.8
    shared = share(model, {"emb": 4, "fc": 4}, 20)
    freeze(model, shared, half=False)
    assert len(torch.unique(model.emb.weight[model.emb.weight != 0])) <= 16  # a 4-bit codebook
    assert model(torch.randint(0, 100, (2, 5))).shape == (2, 4)
