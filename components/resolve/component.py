from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resolve(
    config: str, tracking_uri: str, source_model: Output[Model], dataset: Output[Dataset], source_ref: Output[Artifact]
) -> str:
    """Resolve the source URI in the MLflow registry; emit the model and its dataset.

    `config` is the resolve section (source, data, task, and what later steps need of them).
    The resolved source (name, version, run id, tags) is returned as JSON and also written to
    `source_ref`: the register step, inside the per-target loop, reads the artifact (kfp.local
    hands a loop-nested task the loop item in place of an outer task's parameter).
    """
    import json

    from modelpress.components.resolve.step import resolve_step
    from modelpress.components.task import user_errors

    with user_errors("resolve"):
        ref = resolve_step(config, tracking_uri, source_model.path, dataset.path)
    source_model.metadata.update({"name": ref["name"], "version": ref["version"]})
    with open(source_ref.path, "w") as fh:
        fh.write(json.dumps(ref))
    return json.dumps(ref)
