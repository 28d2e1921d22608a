"""Copy a DVC experiment's report (metrics/results.md and results.json) out of its commit, and print the table.

`dvc exp run --temp` keeps an experiment's results in a git ref (refs/exps/<baseline>/<name>), not in the workspace;
this puts a readable copy next to the default's (e.g. metrics/real/smollm2-real.md) without touching any DVC output,
so `dvc status` of the default stays clean. `dvc exp show` and `dvc exp diff` read the same experiment.

    python scripts/show_experiment.py <experiment name> <folder>
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def experiment_commit(name: str) -> str:
    """The experiment's commit: of HEAD's experiments if it has one by that name, else the newest of that name on any
    baseline (a commit made while the experiment ran moves HEAD past its baseline), said on stderr."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    listed = subprocess.run(["git", "for-each-ref", "--sort=-committerdate", "--format=%(objectname) %(refname)", "refs/exps/"],
                            capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    named = [line.split() for line in listed if line.endswith(f"/{name}")]
    if not named:
        sys.exit(f"error: no experiment {name!r} in this repository (refs/exps/*/{name}); run the make target that makes it first")
    commit, newest = named[0]
    baseline = "".join(newest.split("/")[2:4])
    print(f"note: experiment {name!r} is of commit {baseline[:10]}, not HEAD ({head[:10]})", file=sys.stderr)
    return commit


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    name, folder = sys.argv[1], Path(sys.argv[2])
    commit = experiment_commit(name)
    folder.mkdir(parents=True, exist_ok=True)
    for source, suffix in (("metrics/results.md", ".md"), ("metrics/results.json", ".json")):
        text = subprocess.run(["git", "show", f"{commit}:{source}"], capture_output=True, text=True, check=True).stdout
        (folder / f"{name}{suffix}").write_text(text, encoding="utf-8")
    print((folder / f"{name}.md").read_text(encoding="utf-8"))
    print(f"experiment {name} ({commit[:10]}): {folder / name}.md; `dvc exp show` lists every metric", file=sys.stderr)


if __name__ == "__main__":
    main()
