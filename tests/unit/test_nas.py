"""NAS: search-space bounds and refusals at load, the genome, the front and the selection rule, gates as
constraints, the shared study's budget and the retry of a dead worker's trial (trials faked: no training)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelpress.components.nas import front, search
from modelpress.components.nas.front import TrialPoint
from modelpress.components.nas.settings import NasConfig
from modelpress.components.nas.space import params_of, spec_from, suggest
from modelpress.core.config import parse_config
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model
from modelpress.pipelines.recipe import load_recipe

WITH_DISTILL = {"distill": {"student": {"nas": True}}}


@pytest.mark.parametrize("nas, named", [
    ({"space": {"widths": []}}, "space.widths is empty"),
    ({"space": {"activations": []}}, "space.activations is empty"),
    ({"space": {"depth": {"min": 3, "max": 1}}}, "depth min 3 is above max 1"),
    ({"space": {"depth": {"min": 1, "max": 4}}}, "digits-cnn has at most 3 conv blocks"),
    ({"space": {"family": "mlp", "kernel_sizes": [3]}}, "space.kernel_sizes applies to digits-cnn only"),
    ({"space": {"family": "mlp", "skip": [True]}}, "space.skip applies to digits-cnn only"),
    ({"space": {"family": "mlp", "heads": ["pool"]}}, "space.heads applies to digits-cnn only"),
    ({"space": {"heads": ["average"]}}, "heads"),
    ({"space": {"kernel_sizes": [3, 3]}}, "lists a choice twice"),
    ({"space": {"kernel_sizes": [7]}}, "kernel_sizes"),
    ({"trials": 0}, "trials: Input should be greater than or equal to 1"),
    ({"workers": 0}, "workers"),
    ({"constraints": [{"metric": "flops", "upper": 1}]}, "constraints.0.metric"),
    ({"constraints": [{"metric": "params"}]}, "constraint on params: set lower, upper or both"),
    ({"sampler": "grid"}, "sampler"),
    ({"spaces": {}}, "nas.spaces: unknown key"),
])
def test_a_bad_search_space_is_refused_at_load_in_one_line(nas, named):
    with pytest.raises(ModelpressError) as err:
        load_recipe(nas=nas, **WITH_DISTILL)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_nas_and_distill_must_name_each_other():
    with pytest.raises(ModelpressError, match="set `distill: {student: {nas: true}}`"):
        load_recipe(nas={})
    with pytest.raises(ModelpressError, match="the recipe has no nas section"):
        load_recipe(**WITH_DISTILL)
    with pytest.raises(ModelpressError, match="nas.target cpu-arm64-int8 is not one of the recipe's targets"):
        load_recipe(nas={"target": "cpu-arm64-int8"}, **WITH_DISTILL)
    with pytest.raises(ModelpressError, match="not a database URL"):
        load_recipe(nas={"storage": "redis://localhost"}, **WITH_DISTILL)


def test_the_shipped_recipe_loads_and_chains_nas_before_distill():
    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "digits-nas-int8.yaml")
    assert recipe.chain() == ["nas", "distill", "export_onnx", "quantize"]
    assert "nas" in recipe.needs_labels()


def test_the_genome_builds_every_family_and_round_trips():
    import optuna

    cfg = parse_config(NasConfig, {"space": {"widths": [4, 8], "hidden": [16]}}, "nas")
    import torch

    for head in ("flatten", "pool"):
        spec = DigitsCNNSpec(channels=(8, 4), kernels=(5, 3), hidden=16, activation="relu", residual=True, head=head)
        params = params_of(spec, cfg.space)
        assert spec_from(suggest(optuna.trial.FixedTrial(params), cfg.space), cfg.space, 10, (1, 8, 8)) == spec
        assert build_model(spec)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # The pooled head feeds the dense layer one value per channel: 4 x 16 weights instead of 4 x 2 x 2 x 16.
    linear = [m for m in build_model(spec).modules() if isinstance(m, torch.nn.Linear)][0]
    assert linear.in_features == 4
    mlp = parse_config(NasConfig, {"space": {"family": "mlp", "depth": {"min": 1, "max": 2}, "widths": [5, 7],
                                             "activations": ["gelu"]}}, "nas")
    built = spec_from({"depth": 2, "width_0": 7, "width_1": 5, "activation": "gelu"}, mlp.space, 3, (30,))
    assert built == MLPSpec(in_features=30, hidden=(7, 5), activation="gelu", num_classes=3)
    assert build_model(built)(torch.zeros(2, 30)).shape == (2, 3)


def _pt(n, acc, ms, params, feasible=True):
    return TrialPoint(number=n, accuracy=acc, latency_ms=ms, params=params, feasible=feasible, architecture={})


def test_the_front_keeps_feasible_non_dominated_trials_and_the_rule_picks_one():
    pts = [_pt(0, 0.97, 1.0, 3000), _pt(1, 0.95, 0.5, 2000), _pt(2, 0.94, 0.6, 2500),  # 2 dominated by 1
           _pt(3, 0.99, 0.4, 1000, feasible=False), _pt(4, 0.96, 0.5, 2500)]
    assert [p.number for p in front.pareto_front(pts)] == [1, 4, 0]
    assert front.choose(pts, "fastest").number == 4  # tie on latency: the more accurate
    assert front.choose(pts, "smallest").number == 1
    assert front.choose(pts, "most_accurate").number == 0
    with pytest.raises(ModelpressError, match="none of the 1 completed trials meets the constraints"):
        front.choose([_pt(0, 0.9, 1, 1, feasible=False)], "fastest")


def test_accuracy_gates_become_constraints_with_the_short_training_slack():
    from modelpress.validators.gates import Gate

    gates = (Gate(metric="accuracy", change={"max_degradation": 0.01}), Gate(metric="accuracy", value={"lower": 0.9}),
             Gate(metric="size_ratio", direction="lower_is_better", value={"upper": 0.2}))
    change, value = search.gate_constraints(gates, teacher_val_accuracy=0.98, slack=0.03)  # size: not for trials
    assert change.metric == value.metric == "accuracy"
    assert change.lower == pytest.approx(0.94) and value.lower == pytest.approx(0.87)
    assert change.violation(0.95) == 0 and change.violation(0.90) == pytest.approx(0.04)


def test_unreachable_storage_is_one_line_naming_the_url():
    cfg = NasConfig()
    t0 = time.monotonic()
    with pytest.raises(ModelpressError) as err:
        search.open_storage("postgresql://nobody:secret@127.0.0.1:9/optuna", cfg)
    assert "NAS study storage postgresql://nobody:***@127.0.0.1:9/optuna is unreachable" in str(err.value)
    assert "secret" not in str(err.value) and time.monotonic() - t0 < 20


@pytest.fixture
def fake_trials(monkeypatch):
    """Trials that sample the genome and score it by formula, instead of training."""
    def evaluate(study, trial, ctx, say=None):
        params = suggest(trial, ctx.config.space)
        spec = spec_from(params, ctx.config.space, 10, (1, 8, 8))
        trial.set_user_attr("architecture", spec.model_dump(mode="json"))
        trial.set_user_attr("feasible", True)
        width = sum(params[f"width_{i}"] for i in range(params["depth"]))
        return 0.9 + width / 1000, float(width), float(width * 10)

    monkeypatch.setattr(search, "evaluate_trial", evaluate)


def _ctx(cfg):
    return search.TrialContext(teacher=None, data=None, config=cfg, target=None, batch_size=64, quantize=None,
                               constraints=(), input_shape=(1, 8, 8), num_classes=10)


def test_workers_share_one_budget_and_a_dead_workers_trial_is_retried(fake_trials, tmp_path):
    import optuna

    cfg = parse_config(NasConfig, {"trials": 6, "heartbeat_seconds": 1, "population": 2}, "nas")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = search.open_study(search.open_storage(url, cfg), "s", cfg)
    # A worker that died mid-trial: its trial is RUNNING and its heartbeat stops.
    dead = study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    counts = search.run_worker(search.open_study(search.open_storage(url, cfg), "s", cfg, worker=1), _ctx(cfg),
                               say=lambda m: None)
    assert counts["COMPLETE"] == 6 and counts["FAIL"] == 1
    trials = study.get_trials()
    assert len({t.number for t in trials}) == len(trials)
    (retry,) = [t for t in trials if "retry_of" in t.user_attrs]
    assert retry.user_attrs["retry_of"] == dead.number and retry.state == optuna.trial.TrialState.COMPLETE
    # A rerun of a finished study does nothing more.
    assert search.run_worker(study, _ctx(cfg), say=lambda m: None)["COMPLETE"] == 6


def test_the_study_name_follows_the_source_version_and_recipe():
    a = search.study_name("models:/m/1", "0123456789abcdef")
    assert a == search.study_name("models:/m/1", "0123456789abcdef")
    assert a != search.study_name("models:/m/2", "0123456789abcdef")
    assert a != search.study_name("models:/m/1", "fedcba9876543210")


class UsersClassifier:
    """A model modelpress did not define: the user's own torch module, registered as ONNX."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Tabular(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = nn.Sequential(nn.Linear(30, 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh())
                self.head = nn.Linear(32, 2)

            def forward(self, features: torch.Tensor) -> torch.Tensor:
                return self.head(self.body(features) + 0.1 * self.body(features).pow(2))

        return Tabular()


@pytest.fixture(scope="module")
def users_onnx_classifier(tmp_path_factory):
    """Breast cancer (30 features, 2 classes) and the user's classifier trained on it, as an ONNX model folder."""
    import numpy as np
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from modelpress.core import artifacts
    from modelpress.core.data import DatasetSplits

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=0)
    data = DatasetSplits.single("breast-cancer", 0, x_train, y_train, x_val, y_val, x_test, y_test, "features")
    torch.manual_seed(0)
    model = UsersClassifier.build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x_train)), torch.from_numpy(y_train)).backward()
        opt.step()
    root = tmp_path_factory.mktemp("users")
    torch.onnx.export(model.eval(), (torch.zeros(2, 30),), str(root / "user.onnx"), input_names=["features"],
                      output_names=["logits"], dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    return artifacts.save_onnx(root / "teacher", root / "user.onnx"), data


def test_nas_finds_an_mlp_student_for_a_users_onnx_classifier_and_distill_trains_it(users_onnx_classifier, tmp_path):
    from modelpress.core.artifacts import read_notes, write_notes
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    teacher_dir, data = users_onnx_classifier
    nas = get_technique("nas")
    cfg = nas.parse_config({"space": {"family": "mlp", "depth": {"min": 1, "max": 2}, "widths": [4, 8, 16],
                                      "activations": ["relu", "gelu"]},
                            "trials": 4, "population": 2, "train": {"epochs": 3, "patience": 3}, "latency_runs": 5,
                            "select": "smallest"})
    result = nas.apply(teacher_dir, data, cfg, parse_target("cpu-x86-int8"), tmp_path / "nas")
    arch = result.notes["architecture"]
    assert arch["family"] == "mlp" and arch["in_features"] == 30 and arch["num_classes"] == 2
    assert result.metrics["trials_complete"] >= 4 and result.metrics["chosen_params"] == min(
        p["params"] for p in result.notes["front"])
    # distill {student: {nas: true}} trains exactly that architecture against the user's ONNX teacher.
    write_notes(tmp_path / "nas", {"nas": result.notes})
    distill = get_technique("distill")
    trained = distill.apply(tmp_path / "nas", data, distill.parse_config(
        {"student": {"nas": True}, "train": {"epochs": 3, "patience": 3}}), None, tmp_path / "student")
    assert trained.notes["student"] == arch and trained.notes["teacher_format"] == "onnx"
    assert read_notes(tmp_path / "nas")["nas"]["trial"] == result.notes["trial"]


def test_a_family_that_cannot_take_the_teachers_input_is_one_line(users_onnx_classifier, tmp_path):
    from modelpress.core.technique import get_technique

    teacher_dir, data = users_onnx_classifier
    nas = get_technique("nas")
    with pytest.raises(ModelpressError, match="digits-cnn takes 1x8x8 images, and the teacher's input is 30"):
        nas.apply(teacher_dir, data, nas.parse_config({"trials": 1}), None, tmp_path / "nas")
