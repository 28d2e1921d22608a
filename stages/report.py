"""report: every evaluated cell in metrics/results.json, the paper-style table in metrics/results.md, and a plot."""

import sys

from perpetual import paths
from perpetual.config import load_params
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_json, write_json, write_text
from perpetual.report import flatten, markdown_table, plot


@exits_cleanly
def main() -> None:
    params = load_params()
    rows, baselines = [], {}
    for task in params.pipeline.tasks:
        for model in params.pipeline.models:
            evaluation = read_json(paths.stage_metrics("eval", f"{task}-{model}"))
            baselines[task] = evaluation["baselines"]
            rows.extend(flatten(task, model, evaluation))

    write_json(paths.METRICS / "results.json", {"rows": rows})
    write_text(paths.METRICS / "results.md", markdown_table(rows, baselines, params.evaluate.formats))
    with atomic_path(paths.METRICS / "results.png") as tmp:
        plot(rows, str(tmp))
    print(f"report: {len(rows)} cells -> metrics/results.md", file=sys.stderr)


if __name__ == "__main__":
    main()
