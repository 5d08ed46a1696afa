"""Distillation: config bounds, the student catalog, torch and ONNX teachers, hints, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelpress.components.distill.distill import distill
from modelpress.components.distill.settings import METRICS, DistillConfig, StudentConfig
from modelpress.components.distill.teacher import Teacher
from modelpress.components.export_onnx.onnx_export import export_onnx
from modelpress.core import artifacts
from modelpress.core.config import parse_config
from modelpress.core.data import load_dataset
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique
from modelpress.errors import ModelpressError
from modelpress.models.train import TrainConfig, train
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model

STUDENT = {"family": "digits-cnn", "width": 0.45}
QUICK = {"epochs": 3, "patience": 3}
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def data():
    return load_dataset("sklearn-digits")


@pytest.fixture(scope="module")
def teacher_dir(data, tmp_path_factory) -> Path:
    module = build_model(DigitsCNNSpec(), seed=0)
    train(module, data, TrainConfig(epochs=5), progress=lambda s: None)
    return artifacts.save_torch(tmp_path_factory.mktemp("t") / "teacher", module, DigitsCNNSpec(),
                                artifacts.TensorSpec(shape=SHAPE), "sklearn-digits")


def _cfg(**extra) -> DistillConfig:
    return parse_config(DistillConfig, {"student": STUDENT, "train": QUICK, **extra}, "recipe.distill")


@pytest.mark.parametrize("body, named", [
    ({"student": STUDENT, "temperature": 0}, "temperature 0.0 must be > 0"),
    ({"student": STUDENT, "temperature": -2}, "temperature -2.0 must be > 0"),
    ({"student": STUDENT, "alpha": 1.5}, "alpha 1.5 is outside [0, 1]"),
    ({"student": STUDENT, "alpha": -0.1}, "alpha -0.1 is outside [0, 1]"),
    ({"student": {}}, "give the student one of `family`"),
    ({"student": {"family": "digits-cnn", "architecture": {"family": "mlp"}}}, "give the student one of `family`"),
    ({"student": {"family": "digits-cnn", "depth": 4}}, "at most 3 conv blocks"),
    ({"student": STUDENT, "temprature": 2}, "temprature: unknown key"),
])
def test_config_errors_name_the_value(body, named):
    with pytest.raises(ModelpressError) as exc:
        parse_config(DistillConfig, body, "recipe.distill")
    assert named in str(exc.value) and "\n" not in str(exc.value)


def test_student_catalog():
    assert StudentConfig(**STUDENT).spec(10) == DigitsCNNSpec(channels=(7, 14), hidden=29)
    assert StudentConfig(family="digits-cnn", width=0.25, depth=3).spec(5) == \
        DigitsCNNSpec(channels=(4, 8, 16), hidden=16, num_classes=5)
    assert StudentConfig(family="mlp", width=0.1, depth=1).spec(10) == MLPSpec(hidden=(30,))
    explicit = MLPSpec(hidden=(20, 20))
    assert StudentConfig(architecture=explicit).spec(10) == explicit


def test_distill_trains_a_small_student_deterministically(teacher_dir, data, tmp_path):
    technique = get_technique("distill")
    r1 = technique.apply(teacher_dir, data, _cfg(), parse_target("cpu-x86-fp32"), tmp_path / "a")
    r2 = technique.apply(teacher_dir, data, _cfg(), parse_target("cpu-x86-fp32"), tmp_path / "b")
    assert r1.metrics["params_ratio"] < 0.25
    assert set(r1.metrics) == set(METRICS)  # what gates may name, checked at recipe load
    assert [h["epoch"] for h in r1.notes["history"]] == [1, 2, 3]
    assert artifacts.read_manifest(r1.model_dir).architecture == DigitsCNNSpec(channels=(7, 14), hidden=29)
    a, _ = artifacts.load_torch(r1.model_dir)
    b, _ = artifacts.load_torch(r2.model_dir)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_an_onnx_teacher_teaches_the_same(teacher_dir, data, tmp_path):
    """A registered variant is ONNX; as a teacher it gives the torch teacher's logits."""
    onnx_dir = export_onnx(teacher_dir, tmp_path / "onnx")
    torch_teacher, onnx_teacher = Teacher(teacher_dir), Teacher(onnx_dir)
    x = torch.from_numpy(data.x_val[:50])
    assert torch.allclose(torch_teacher(x), onnx_teacher(x), atol=1e-4)
    _, _, m_onnx, notes = distill(onnx_teacher, data, _cfg(), SHAPE, say=lambda s: None)
    _, _, m_torch, _ = distill(torch_teacher, data, _cfg(), SHAPE, say=lambda s: None)
    assert notes["teacher_format"] == "onnx"
    assert m_onnx["val_accuracy"] == pytest.approx(m_torch["val_accuracy"], abs=0.02)


def test_hints_train_through_a_projection(teacher_dir, data):
    cfg = _cfg(hints=[{"teacher_layer": "4", "student_layer": "4"}, {"teacher_layer": "9", "student_layer": "9"}],
               train={"epochs": 10, "patience": 10})
    student, _, metrics, notes = distill(Teacher(teacher_dir), data, cfg, SHAPE, say=lambda s: None)
    assert len(notes["hints"]) == 2 and metrics["val_accuracy"] > 0.5
    assert not student._forward_hooks and not dict(student.named_modules())["4"]._forward_hooks


def test_refusals(teacher_dir, data, tmp_path):
    teacher = Teacher(teacher_dir)
    seven = _cfg(student={"architecture": {"family": "digits-cnn", "channels": [4], "num_classes": 7}})
    with pytest.raises(ModelpressError, match=r"teacher and student output shapes differ: teacher \(10,\), "
                                              r"student \(7,\)") as exc:
        distill(teacher, data, seven, SHAPE, say=lambda s: None)
    assert "num_classes to 10" in exc.value.fix
    with pytest.raises(ModelpressError, match="the student has no module named 'conv9'"):
        distill(teacher, data, _cfg(hints=[{"teacher_layer": "4", "student_layer": "conv9"}]), SHAPE,
                say=lambda s: None)
    with pytest.raises(ModelpressError, match="a hint pairs two feature maps or two vectors"):
        distill(teacher, data, _cfg(hints=[{"teacher_layer": "4", "student_layer": "9"}]), SHAPE,
                say=lambda s: None)
    onnx_teacher = Teacher(export_onnx(teacher_dir, tmp_path / "onnx"))
    with pytest.raises(ModelpressError, match="distill.hints needs a torch teacher, but the teacher is onnx"):
        distill(onnx_teacher, data, _cfg(hints=[{"teacher_layer": "4", "student_layer": "4"}]), SHAPE,
                say=lambda s: None)


def test_narrowed_source_student_is_the_teacher_with_fewer_channels(teacher_dir, data, tmp_path):
    """student: {narrow: 0.5}: the source pruned to half its channels, trained against the full source,
    saved as a program (its architecture is no catalog spec)."""
    cfg = parse_config(DistillConfig, {"student": {"narrow": 0.5}, "train": QUICK}, "recipe.distill")
    r = get_technique("distill").apply(teacher_dir, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "n")
    assert 0.15 < r.metrics["params_ratio"] < 0.45
    assert r.notes["student"] == {"narrow": 0.5}
    manifest = artifacts.read_manifest(r.model_dir)
    assert manifest.format == "torch-export" and manifest.outputs[0].shape == (10,)
    student, _ = artifacts.load_torch(r.model_dir)
    assert student(torch.from_numpy(data.x_val[:3])).shape == (3, 10)
    assert r.metrics["val_accuracy"] > 0.5


def test_a_given_student_trains_from_its_own_weights(teacher_dir, data, tmp_path):
    """student: {model: ...}: what the registry holds (fetched by the pipeline step) is trained as it is."""
    small = build_model(MLPSpec(hidden=(16,)), seed=1)
    student_dir = artifacts.save_program_dir(tmp_path / "s", small, (artifacts.TensorSpec(shape=SHAPE),),
                                             (artifacts.TensorSpec(name="logits", shape=(10,)),))
    cfg = parse_config(DistillConfig, {"student": {"model": "models:/small@champion"}, "train": QUICK},
                       "recipe.distill")
    with pytest.raises(ModelpressError, match="was not fetched"):
        get_technique("distill").apply(teacher_dir, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "x")
    r = get_technique("distill").apply(teacher_dir, data, cfg, parse_target("cpu-x86-fp32"), tmp_path / "g",
                                       student_dir=student_dir)
    assert r.metrics["student_params"] == sum(p.numel() for p in small.parameters())
    assert artifacts.read_manifest(r.model_dir).format == "torch-export"
    with pytest.raises(ModelpressError, match="student.model: 'models:/bad' is not a registry model URI"):
        parse_config(DistillConfig, {"student": {"model": "models:/bad"}}, "recipe.distill")
