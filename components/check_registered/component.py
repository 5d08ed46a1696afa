from kfp import dsl
from kfp.dsl import Artifact, Output, OutputPath

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def check_registered(
    run: str,
    variant: str,
    targets: list,
    tracking_uri: str,
    force: bool,
    todo: OutputPath(list),
    source: Output[Artifact],
    registered: Output[Artifact],
) -> bool:
    """Pin the source version and list the targets whose variant is not registered yet (`todo`).

    Returns whether any work is left: the rest of the pipeline runs under dsl.If on it, so a run
    of an unchanged source and recipe is this one task. With `force`, every target is built again.
    `source` is the resolved source (every later step uses that version, even if its alias moves).
    """
    import json

    from modelpress.components.check_registered.step import check_registered_step
    from modelpress.components.task import user_errors

    with user_errors("check_registered"):
        left = check_registered_step(run, variant, targets, tracking_uri, force, source.path, registered.path)
    with open(todo, "w") as fh:
        fh.write(json.dumps(left))
    return bool(left)
