"""microstd.testing as a plugin author meets it: `pytest --microstd-<area>=URL` in a
project of their own (strict asyncio mode, warnings as errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = -p no:cacheprovider --strict-markers
"""


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "pytest.ini").write_text(_INI)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_option_runs_the_area_suite_in_a_strict_project(tmp_path: Path) -> None:
    done = _pytest(
        tmp_path,
        "--microstd-sync=memory://{unique}?impl=python",
        "-k",
        "close or bad_names or tokens_increase",
        "-rA",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED sync/contract.py::test_acquire_release_and_tokens_increase" in done.stdout
    assert "PASSED sync/contract.py::test_close_means_closed" in done.stdout
    assert "store/" not in done.stdout  # only the area asked for


def test_an_unknown_missing_feature_is_a_usage_error(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--microstd-store=memory://", "--microstd-without=colour")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unknown feature(s) colour" in done.stderr


def test_the_plugin_is_inert_without_its_options(tmp_path: Path) -> None:
    done = _pytest(tmp_path)
    assert done.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, done.stdout + done.stderr
