"""fetch@<task> (fetch.sources: read from disk) and fetch-remote@<task> (fetch.remote_sources: a pinned git
repository or a hub dataset): the task's source as normalised documents (data/raw/<task>.jsonl)."""

import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import write_json, write_jsonl
from perpetual.sources import fetch


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, source=True)

    report = fetch(args.task, params.fetch.source(args.task), cache_dir=paths.git_cache())
    for source, reason in sorted(report.skipped.items()):
        print(f"skipped {source}: {reason}", file=sys.stderr)

    write_jsonl(paths.raw(args.task), report.documents)
    write_json(
        paths.stage_metrics("fetch", args.task),
        {
            "documents": len(report.documents),
            "revision": report.revision,  # the commit read (git, hub); null for a source read from disk
            "skipped": len(report.skipped),
            "skipped_files": report.skipped,
            "cleaning": dict(sorted(report.cleaning.items())),
        },
    )
    print(f"fetch {args.task}: {len(report.documents)} documents, {len(report.skipped)} skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
