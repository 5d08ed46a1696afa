"""`modelpress --help` must stay cheap: every KFP task and CI job pays for imports."""

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "mlflow", "kfp", "onnxruntime", "onnx", "sklearn", "great_expectations"]
COMMANDS = ["demo", "run", "train-demo", "compile", "targets", "config-schema"]

PROBE = """
import json, sys
from modelpress.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help_imports_nothing_heavy(argv):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: modelpress" in proc.stdout
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_targets_command_is_light_too():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=["targets"], heavy=HEAVY)],
        capture_output=True, text=True, timeout=60,
    )
    assert "cpu-x86-int8" in proc.stdout
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_unknown_target_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "modelpress", "run", "--target", "tpu-v9"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelpress: error:") and "tpu-v9" in lines[0]
    assert not (tmp_path / ".modelpress").exists()  # refused before touching any store


def test_train_demo_offers_exactly_the_zoo_presets():
    from modelpress.models.zoo import PRESETS

    proc = subprocess.run([sys.executable, "-m", "modelpress", "train-demo", "--help"],
                          capture_output=True, text=True, timeout=60)
    offered = proc.stdout.split("--architecture {", 1)[1].split("}", 1)[0].split(",")
    assert offered == list(PRESETS)


def test_progress_shows_each_task_start_and_end_with_seconds_and_quiet_shows_only_failures():
    import io

    from modelpress.pipelines.local import _ProgressTee

    kfp_lines = (
        "13:30:43.650 - INFO - Executing task \x1b[96m'quantize'\x1b[0m\n"
        "    [KFP Executor] Got executor_input: {...}\n"
        "[modelpress] [cpu-x86-int8] quantize: mode static, size 0.32x of source\n"
        "13:30:49.049 - INFO - Task \x1b[96m'quantize'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
        "13:30:49.051 - INFO - Executing task 'gate'\n"
        "13:30:50.051 - INFO - Task 'gate' finished with status FAILURE\n"
    )
    for quiet, expected in ((False, ["  > quantize", "    [cpu-x86-int8] quantize: mode static, size 0.32x of source",
                                     "  < quantize in", "  > gate", "  x gate failure in"]),
                            (True, ["  x gate failure in"])):
        log, terminal = io.StringIO(), io.StringIO()
        tee = _ProgressTee(log, terminal, verbose=False, quiet=quiet)
        tee.write(kfp_lines)
        shown = terminal.getvalue().splitlines()
        assert [line[: len(e)] for line, e in zip(shown, expected)] == expected and len(shown) == len(expected)
        assert log.getvalue() == kfp_lines  # the log keeps everything
