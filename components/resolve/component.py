from kfp import dsl
from kfp.dsl import Dataset, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resolve(recipe: str, tracking_uri: str, source_model: Output[Model], dataset: Output[Dataset]) -> str:
    """Resolve the recipe's source URI in the MLflow registry; emit the model and its dataset.

    Returns the resolved source (name, version, run id, tags) as JSON.
    """
    import json

    from modelpress.components.steps import resolve_step
    from modelpress.components.task import user_errors

    with user_errors("resolve"):
        ref = resolve_step(recipe, tracking_uri, source_model.path, dataset.path)
    source_model.metadata.update({"name": ref["name"], "version": ref["version"]})
    return json.dumps(ref)
