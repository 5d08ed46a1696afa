from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def nas_worker(
    config: str,
    worker: int,
    run: str,
    tracking_uri: str,
    targets: list,
    evaluate: str,
    quantize: str,
    gates: str,
    source: Input[Artifact],
    model: Input[Model],
    dataset: Input[Dataset],
) -> int:
    """Pull trials from the run's shared Optuna study until it holds its budget of completed trials.

    `config` is the recipe's nas section (null: nothing to do). `model` is the teacher. Returns the
    study's completed trials when this worker stopped.
    """
    from modelpress.components.nas.step import worker_step
    from modelpress.components.task import user_errors

    with user_errors("nas_worker"):
        return worker_step(config, worker, run, tracking_uri, source.path, targets, evaluate, quantize, gates,
                           model.path, dataset.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def nas_select(
    config: str,
    run: str,
    tracking_uri: str,
    source: Input[Artifact],
    model: Input[Model],
    dataset: Input[Dataset],
    out_model: Output[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Pick the recipe's trial from the study's feasible Pareto front; log the search to MLflow.

    `out_model` is the teacher, unchanged, noting the chosen architecture for the distill step.
    With `config` null the teacher passes through.
    """
    from modelpress.components.nas.step import select_step
    from modelpress.components.task import user_errors

    with user_errors("nas_select"):
        measured = select_step(config, run, tracking_uri, source.path, model.path, dataset.path, out_model.path,
                               report.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
