from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    config: str,
    target: str,
    run: str,
    tracking_uri: str,
    source: Input[Artifact],
    candidate: Input[Model],
    verdict: Input[Artifact],
    report: Input[Markdown],
    pipeline_run_id: str,
) -> str:
    """Register the candidate as `target`'s variant, with lineage tags and the alias of `config` (the variant section).

    Idempotent: the same source version, config and target reuse the existing version.
    """
    from modelpress.components.register.step import register_step
    from modelpress.components.task import user_errors

    with user_errors(f"register [{target}]"):
        return register_step(
            config, target, run, tracking_uri, source.path, candidate.path, verdict.path, report.path, pipeline_run_id
        )
