#!/usr/bin/env python3
"""Compare the DVC experiments of a study, e.g. the recipes swept by `make study-real`, on the same questions.

    python scripts/study.py --prefix study- --param train.recipe --out metrics/studies/recipes

Reads every experiment whose name starts with --prefix (HEAD's first) (`dvc exp show` lists them); writes <out>.json, <out>.md
and <out>.png (perpetual/study.py says what is in them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perpetual.errors import UserError, exits_cleanly  # noqa: E402
from perpetual.io import write_json  # noqa: E402
from perpetual.study import Arm, experiments, markdown, params_at, plot, study, value_at  # noqa: E402


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", required=True, help="the experiments' name prefix")
    parser.add_argument("--param", required=True, help="the dotted param the experiments differ in")
    parser.add_argument("--out", required=True, type=Path, help="the output path, without suffix")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (experiments run for a target such as analysis@<task>-<model>); default: pipeline.tasks")
    args = parser.parse_args()
    found = experiments(args.prefix)
    if len(found) < 2:
        raise UserError(f"{len(found)} experiment(s) named {args.prefix}* ; a study compares at least two (dvc exp show)")
    settings = {name: params_at(commit) for name, commit in found.items()}
    arms = [Arm(name, commit, str(value_at(settings[name], args.param))) for name, commit in sorted(found.items())]
    pipeline = settings[arms[0].name]["pipeline"]
    result = study(arms, args.tasks or pipeline["tasks"], pipeline["models"], args.param)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    plot(result, str(args.out.with_suffix(".png")))
    print(markdown(result))


if __name__ == "__main__":
    main()
