"""Copy the report after the last round out of a rounds experiment (`make rounds`, `make rounds-real`) to
metrics/rounds/<model>.{md,json,png}, and print it.

`dvc exp run --temp` keeps the experiment's results in its commit (refs/exps/...), not in the workspace (whose plan is
empty); report-round@<round> writes metrics/rounds/<model>/<round>.{json,md,png} there, `cache: false`, so they are in
the commit. The copies are plain files beside the default's results, touching no DVC output.

    python scripts/rounds_report.py <experiment name> [folder]      (folder: metrics/rounds)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from show_experiment import experiment_commit  # noqa: E402


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    name = sys.argv[1]
    folder = Path(sys.argv[2] if len(sys.argv) == 3 else "metrics/rounds")
    commit = experiment_commit(name)
    params = yaml.safe_load(subprocess.run(["git", "show", f"{commit}:params.yaml"], capture_output=True, text=True, check=True).stdout)
    model, plan = params["rounds"]["model"], list(params["rounds"]["plan"])
    if not plan:
        sys.exit(f"error: experiment {name} has no rounds (rounds.plan is empty)")
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".md", ".json", ".png"):
        data = subprocess.run(["git", "show", f"{commit}:metrics/rounds/{model}/{plan[-1]}{suffix}"], capture_output=True, check=True).stdout
        (folder / f"{model}{suffix}").write_bytes(data)
    print((folder / f"{model}.md").read_text(encoding="utf-8"))
    print(f"experiment {name} ({commit[:10]}): {folder / model}.md, the report after round {plan[-1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
