"""The distill technique: a teacher model folder in, a trained student model folder out.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))     (Hinton et al. 2015)
         + (1 - alpha) * cross-entropy(student, labels)
         + sum over hints of weight * MSE(projection(student feature), teacher feature)  (FitNets)

The projection of each hint (a 1x1 conv for feature maps, a linear layer for vectors) is
trained with the student and dropped afterwards. Training is `models.train.train`: seeded,
early stopping on validation, progress per epoch, the best epoch kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.distill.settings import METRICS, DistillConfig, HintConfig
from modelpress.components.distill.teacher import Teacher
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.progress import say as _say
from modelpress.core.technique import Result, Technique, require_torch
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch


def _capture(module: torch.nn.Module, name: str, store: dict, key: str, whose: str) -> Any:
    mods = dict(module.named_modules())
    if name not in mods or name == "":
        known = ", ".join(n for n in mods if n)
        raise ModelpressError(f"distill.hints: the {whose} has no module named {name!r}", f"use one of: {known}")
    return mods[name].register_forward_hook(lambda _m, _i, out: store.__setitem__(key, out))


def _projection(student_feat: torch.Tensor, teacher_feat: torch.Tensor, hint: HintConfig) -> torch.nn.Module:
    """Maps the student's feature onto the teacher's shape."""
    from torch import nn

    s, t = student_feat.shape, teacher_feat.shape
    if len(s) == 4 and len(t) == 4:
        layers: list[nn.Module] = [nn.Conv2d(s[1], t[1], kernel_size=1)]
        if s[2:] != t[2:]:
            layers.append(nn.AdaptiveAvgPool2d(tuple(t[2:])))
        return nn.Sequential(*layers)
    if len(s) == 2 and len(t) == 2:
        return nn.Linear(s[1], t[1])
    raise ModelpressError(
        f"distill.hints: student layer {hint.student_layer!r} gives shape {tuple(s[1:])} and teacher layer "
        f"{hint.teacher_layer!r} gives {tuple(t[1:])}; a hint pairs two feature maps or two vectors",
        "pick layers of the same kind (both convolutional, or both linear)",
    )


def narrowed(teacher: Teacher, ratio: float, input_shape: tuple[int, ...], say: Callable[[str], None]) -> Any:
    """A copy of the torch teacher with `ratio` of its channels removed (smallest first), untrained."""
    import copy

    from modelpress.components.prune.prune import _pruner
    from modelpress.components.prune.settings import PruneConfig

    student = copy.deepcopy(teacher.torch_module("distill.student.narrow")).train()
    pruner = _pruner(student, input_shape, PruneConfig(method="structured", ratio=ratio))
    pruner.prune_to(pruner.final_ratios())
    say(f"student: the source with {ratio:.0%} of its channels removed ({pruner.report()['channels']})")
    return student


def distill(
    teacher: Teacher,
    data: DatasetSplits,
    config: DistillConfig,
    input_shape: tuple[int, ...],
    say: Callable[[str], None] = _say,
    student: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, Any, dict[str, float], dict[str, Any]]:
    """Train the configured student against `teacher`; returns (student, spec, metrics, notes).

    `student` is a model given whole (a registered one); else the config builds it: a catalog
    spec (returned as `spec`), or the teacher narrowed (spec None, as for a given student).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from modelpress.models.train import accuracy, distillation_loss, train
    from modelpress.models.zoo import build_model

    probe = torch.zeros((2, *input_shape))
    teacher_out = teacher(probe)
    num_classes = int(teacher_out.shape[-1])
    spec = config.student.spec(num_classes) if config.student.catalog else None
    if student is None:
        torch.manual_seed(config.train.seed)
        student = build_model(spec, seed=config.train.seed) if spec is not None else narrowed(
            teacher, config.student.narrow, input_shape, say)  # type: ignore[arg-type]
    try:
        student_out = student.eval()(probe)
    except RuntimeError as exc:
        raise ModelpressError(
            f"the student architecture does not accept the teacher's input of shape {input_shape} "
            f"({str(exc).splitlines()[0]})", "pick a student family that fits the input, or fix student.architecture",
        ) from None
    if tuple(student_out.shape) != tuple(teacher_out.shape):
        raise ModelpressError(
            f"teacher and student output shapes differ: teacher {tuple(teacher_out.shape[1:])}, "
            f"student {tuple(student_out.shape[1:])}",
            f"set student.architecture.num_classes to {num_classes}, or use a catalog student "
            "(student.family), which takes the teacher's" if spec is not None else
            "register a student whose output has the teacher's shape",
        )

    kd = distillation_loss(teacher, config.temperature, config.alpha)
    feats: dict[str, torch.Tensor] = {}
    projections = nn.ModuleList()
    hooks = []
    if config.hints:
        t_module = teacher.torch_module("distill.hints")
        for i, hint in enumerate(config.hints):
            hooks.append(_capture(t_module, hint.teacher_layer, feats, f"t{i}", "teacher"))
            hooks.append(_capture(student, hint.student_layer, feats, f"s{i}", "student"))
        with torch.no_grad():
            t_module(probe)
            student(probe)
        for i, hint in enumerate(config.hints):
            projections.append(_projection(feats[f"s{i}"], feats[f"t{i}"], hint))

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = kd(logits, x, y)  # runs the teacher on x, which also fills its hint features
        for i, hint in enumerate(config.hints):
            total = total + hint.weight * F.mse_loss(projections[i](feats[f"s{i}"]), feats[f"t{i}"])
        return total

    class WithProjections(nn.Module):
        """The student plus the hint projections, so one optimizer trains both."""

        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.projections = projections

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.student(x)

    what = spec.model_dump() if spec is not None else (config.student.model or f"the source narrowed by "
                                                                                f"{config.student.narrow}")
    say(f"distilling into {what} (T={config.temperature}, alpha={config.alpha}, {len(config.hints)} hints)")
    try:
        result = train(WithProjections(), data, config.train, progress=say, loss=loss)
    finally:
        for h in hooks:
            h.remove()
    student.eval()
    teacher_params = teacher.parameters()
    student_params = sum(p.numel() for p in student.parameters())
    teacher_val = float((teacher(torch.from_numpy(data.x_val)).argmax(1).numpy() == data.y_val).mean())
    metrics = {
        "student_params": float(student_params),
        "teacher_params": float(teacher_params),
        "params_ratio": student_params / teacher_params,
        "val_accuracy": accuracy(student, data.x_val, data.y_val),
        "teacher_val_accuracy": teacher_val,
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
    }
    notes = {"student": spec.model_dump(mode="json") if spec is not None else
             config.student.model_dump(mode="json", include={"model", "narrow"}, exclude_none=True),
             "temperature": config.temperature,
             "alpha": config.alpha, "hints": [h.model_dump() for h in config.hints],
             "teacher_format": teacher.kind}
    return student, spec, metrics, {**notes, "history": list(result.history)}


def with_searched_student(config: DistillConfig, model_dir: Path) -> DistillConfig:
    """`student: {nas: true}` made concrete: the architecture the nas step noted on the model it passed on."""
    from modelpress.components.distill.settings import StudentConfig

    chosen = artifacts.read_notes(model_dir).get("nas", {}).get("architecture")
    if chosen is None:
        raise ModelpressError("distill.student.nas: the model carries no architecture from a nas step",
                              "run distill after the nas step (the pipeline does), or give the student another way")
    return config.model_copy(update={"student": StudentConfig(architecture=chosen)})


class Distill(Technique):
    """Knowledge distillation from the source model (the teacher) into a configured student."""

    name = "distill"
    Config = DistillConfig
    description = "Distill step (the source is the teacher); None: no distillation."
    input_format = "any"  # the teacher may be a torch or an ONNX model
    output_format = "torch"  # the student
    section = "distill"
    component = "modelpress.components.distill.component:distill"
    cacheable = False  # it logs the MLflow training run the variant links to
    source_role = "teacher"
    METRICS = METRICS

    def needs_labels(self, config: DistillConfig) -> bool:  # type: ignore[override]
        return True

    def check_recipe(self, config: DistillConfig, recipe: Any) -> None:  # type: ignore[override]
        if config.student.nas and getattr(recipe, "nas", None) is None:
            raise ModelpressError("distill.student.nas: true trains the architecture a nas step chose, and the "
                                  "recipe has no nas section: add one, or give the student another way")

    def registry_models(self, config: DistillConfig) -> dict[str, str]:  # type: ignore[override]
        return {"distill student (distill.student.model)": config.student.model} if config.student.model else {}

    def describe(self, result: Result) -> list[str]:
        m = result.metrics
        return [f"distill: student {int(m['student_params'])} params ({m['params_ratio']:.2f}x of the teacher), "
                f"val accuracy {m['val_accuracy']:.4f} (teacher {m['teacher_val_accuracy']:.4f})"]

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: DistillConfig,  # type: ignore[override]
        target: HardwareTarget | None,
        out_dir: Path,
        student_dir: Path | None = None,
    ) -> Result:
        """`student_dir`: the fetched `student.model` (a torch model folder), when the config names one."""
        if data is None or len(data.x_train) == 0 or len(data.x_val) == 0:
            raise ModelpressError("distill needs training and validation data, and has none")
        if config.student.nas:
            config = with_searched_student(config, Path(model_dir))
        teacher = Teacher(Path(model_dir))
        given = None
        if config.student.model is not None:
            if student_dir is None:
                raise ModelpressError("distill.student.model was not fetched", "run distill through its pipeline step")
            require_torch(student_dir, "distill.student.model")
            given, _ = artifacts.load_torch(student_dir)
            given.train()
        student, spec, metrics, notes = distill(teacher, data, config, teacher.manifest.input.shape, student=given)
        m = teacher.manifest
        if spec is not None:
            artifacts.save_torch(out_dir, student, spec, m.input, m.dataset)
        else:  # a registered or narrowed student: any architecture, kept as a program
            artifacts.save_program_dir(out_dir, student, m.inputs, m.outputs, m.dataset)
        return Result(model_dir=out_dir, metrics=metrics, notes=notes)
