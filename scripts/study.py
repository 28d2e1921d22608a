#!/usr/bin/env python3
"""Compare the DVC experiments of a study, e.g. the recipes swept by `make study-real`, on the same questions.

    python scripts/study.py --prefix study- --param train.recipe --out metrics/studies/recipes

Reads every experiment whose name starts with --prefix (HEAD's first) (`dvc exp show` lists them) into one record per
arm × task in <out>-arms/ (kept: earlier arms' records count until replaced), then writes <out>.json, <out>.md and
<out>.png from all the records (perpetual/study.py says what is in them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perpetual.errors import UserError, exits_cleanly  # noqa: E402
from perpetual.io import read_json, write_json  # noqa: E402
from perpetual.study import Arm, experiments, markdown, params_at, plot, record_name, records, study, value_at  # noqa: E402


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", required=True, help="the experiments' name prefix")
    parser.add_argument("--param", required=True, help="the dotted param the experiments differ in")
    parser.add_argument("--out", required=True, type=Path, help="the output path, without suffix")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (experiments run for a target such as analysis@<task>-<model>); default: pipeline.tasks")
    args = parser.parse_args()
    found = experiments(args.prefix)
    settings = {name: params_at(commit) for name, commit in found.items()}
    arms = [Arm(name, commit, str(value_at(settings[name], args.param))) for name, commit in sorted(found.items())]
    kept_in = args.out.parent / f"{args.out.name}-arms"
    kept_in.mkdir(parents=True, exist_ok=True)
    if arms:
        pipeline = settings[arms[0].name]["pipeline"]
        for record in records(arms, args.tasks or pipeline["tasks"], pipeline["models"]):
            write_json(kept_in / record_name(record), record)
    kept = [read_json(path) for path in sorted(kept_in.glob("*.json"))]
    kept = [record for record in kept if not args.tasks or record["task"] in args.tasks]
    if len(kept) < 2:
        raise UserError(f"{len(found)} experiment(s) named {args.prefix}* and {len(kept)} record(s) in {kept_in}; a study compares at least two arms (dvc exp show)")
    tasks = list(dict.fromkeys(args.tasks or [record["task"] for record in kept]))
    models = list(dict.fromkeys(record["model"] for record in kept))
    result = study(kept, tasks, models, args.param)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    plot(result, str(args.out.with_suffix(".png")))
    print(markdown(result))


if __name__ == "__main__":
    main()
