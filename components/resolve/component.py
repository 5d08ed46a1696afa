from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resolve(config: str, tracking_uri: str, source: Input[Artifact], source_model: Output[Model],
            dataset: Output[Dataset]):
    """Fetch the pinned source version (`source`, from check_registered) and bind the run's data to it.

    `config` is the resolve section: source URI, data, task, and what later steps need of them
    (a torch model, class labels, measurable gates), so a mismatch stops here, before any compute.
    """
    from modelpress.components.resolve.step import resolve_step
    from modelpress.components.task import user_errors

    with user_errors("resolve"):
        ref = resolve_step(config, tracking_uri, source.path, source_model.path, dataset.path)
    source_model.metadata.update({"name": ref["name"], "version": ref["version"]})
