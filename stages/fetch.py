"""fetch@<task>: read the task's source into normalised documents (data/raw/<task>.jsonl)."""

import argparse
import sys
from pathlib import Path

from perpetual import paths
from perpetual.config import load_params
from perpetual.errors import exits_cleanly
from perpetual.io import write_json, write_jsonl
from perpetual.sources import fetch


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    args = parser.parse_args()
    params = load_params()
    params.require_task(args.task)

    report = fetch(args.task, params.fetch.sources[args.task], cache_dir=Path("data/cache/git"))
    for source, reason in sorted(report.skipped.items()):
        print(f"skipped {source}: {reason}", file=sys.stderr)

    write_jsonl(paths.raw(args.task), report.documents)
    write_json(
        paths.stage_metrics("fetch", args.task),
        {"documents": len(report.documents), "skipped": len(report.skipped), "skipped_files": report.skipped},
    )
    print(f"fetch {args.task}: {len(report.documents)} documents, {len(report.skipped)} skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
