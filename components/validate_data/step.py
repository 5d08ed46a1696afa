"""The data-check step: Great Expectations on every split; the dataset goes on only if they pass."""

from __future__ import annotations

import shutil
from pathlib import Path

from modelpress.core.progress import say


def validate_data_step(config_json: str, dataset_in: Path, dataset_out: Path, report_out: Path) -> bool:
    """The report is written either way; a failure raises, naming each unmet expectation.

    Returns whether the checks ran (false when the section turns them off).
    """
    from modelpress.core.config import parse_config
    from modelpress.core.data import DatasetSplits
    from modelpress.errors import ModelpressError
    from modelpress.validators.data_checks import DataChecksConfig, check_dataset, render_markdown

    config = parse_config(DataChecksConfig, config_json, "data_checks")
    data = DatasetSplits.load(dataset_in)
    if not config.enabled:
        Path(report_out).write_text(f"# Data checks: {data.name}\n\nSkipped: data_checks.enabled is false.\n")
        shutil.copyfile(dataset_in, dataset_out)
        say("data checks: off (data_checks.enabled is false)")
        return False
    report = check_dataset(data, config)
    Path(report_out).write_text(render_markdown(report))
    if not report.passed:
        raise ModelpressError(f"data checks failed on {data.name}: {report.reason()}",
                              "fix the dataset, or relax the recipe's data_checks section")
    shutil.copyfile(dataset_in, dataset_out)
    say(f"data checks: {len(report.results)} expectations met on {data.name} (train, val, test)")
    return True
