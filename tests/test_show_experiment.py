"""scripts/show_experiment.py `experiment_commit`: an experiment is found on HEAD's baseline, or on an older one when
commits were made while it ran (said on stderr), and a name no experiment has is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from show_experiment import experiment_commit  # noqa: E402


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    (repo / "file.txt").write_text(message)
    git("add", "file.txt", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def test_an_experiment_of_an_older_baseline_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    git("init", "-q", cwd=tmp_path)
    baseline = commit(tmp_path, "baseline")
    experiment = commit(tmp_path, "the experiment's results")
    git("update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/rounds-tiny", experiment, cwd=tmp_path)
    git("reset", "-q", "--hard", baseline, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert experiment_commit("rounds-tiny") == experiment
    assert capsys.readouterr().err == ""

    commit(tmp_path, "a commit made while the experiment ran")
    assert experiment_commit("rounds-tiny") == experiment
    assert f"is of commit {baseline[:10]}, not HEAD" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        experiment_commit("rounds-real")
    assert "no experiment 'rounds-real'" in str(missing.value) and "\n" not in str(missing.value)
