from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate_data(config: str, dataset: Input[Dataset], validated: Output[Dataset], report: Output[Markdown]) -> bool:
    """Validate every split with Great Expectations before any step trains, calibrates or evaluates on it.

    `config` is the recipe's data_checks section. Fails the task (and so the run, before any
    compression) naming each unmet expectation; the steps downstream read `validated`, so none
    of them can start on unchecked data. Returns whether checks ran (false when turned off).
    """
    from modelpress.components.task import user_errors
    from modelpress.components.validate_data.step import validate_data_step

    with user_errors("validate_data"):
        ran = validate_data_step(config, dataset.path, validated.path, report.path)
    validated.metadata["checked"] = ran
    return ran
