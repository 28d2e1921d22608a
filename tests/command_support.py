"""A command the end-to-end tests run as a user would (dvc, a stage), failing the test with its output's tails."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_checked(command: list[str], cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result
