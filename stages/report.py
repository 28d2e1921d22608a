"""report: every evaluated cell in metrics/results.json, the paper-style table in metrics/results.md, and a plot;
with them what the flashcards add (held-out flashcards) and retention."""

import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_json, write_json, write_text
from perpetual.report import flatten, guessability, markdown_table, plot, retrieval_summary, where_rag_loses


@exits_cleanly
def main() -> None:
    _, params = stage_args(__doc__)
    rows, baselines, retention, retrieval, flashcards = [], {}, {}, {}, {}
    for task in params.pipeline.tasks:
        retrieval[task] = retrieval_summary(read_json(paths.stage_metrics("index", task)))
        for model in params.pipeline.models:
            evaluation = read_json(paths.stage_metrics("eval", f"{task}-{model}"))
            baselines[task] = evaluation["baselines"]
            rows.extend(flatten(task, model, evaluation))
            if "retention" in evaluation:
                retention[(task, model)] = evaluation["retention"]
            if "flashcards" in evaluation:
                flashcards[(task, model)] = evaluation["flashcards"]

    write_json(
        paths.METRICS / "results.json",
        {
            "rows": rows,
            "retention": {f"{task}-{model}": values for (task, model), values in retention.items()},
            "retrieval": retrieval,
            "flashcards": {f"{task}-{model}": values for (task, model), values in flashcards.items()},
            "guessability": guessability(rows),
            # Per task × model, only where an oracle condition ran: recall@k next to no-context, RAG and oracle accuracy.
            "where_rag_loses": where_rag_loses(rows, retrieval),
        },
    )
    table = markdown_table(
        rows, baselines, params.evaluate.formats, retention, retrieval, params.index.embedder, params.index.context_template,
        flashcards,
    )
    write_text(paths.METRICS / "results.md", table)
    with atomic_path(paths.METRICS / "results.png") as tmp:
        plot(rows, str(tmp), retention)
    print(f"report: {len(rows)} cells -> metrics/results.md", file=sys.stderr)


if __name__ == "__main__":
    main()
