"""The local teacher (perpetual/self_study.py) on a real model: generation speed and what its checks keep.

    python benchmarks/self_study.py --model smollm2 --task code --chunks 8     # one JSON object on stdout

Runs the paraphrase and distill recipes' self-study (perpetual/recipes.py) over the first `--chunks` chunks of a task's
assembled set (data/datasets/<task>, from `make run`) with the model of `init.models.<model>` as its own teacher, in
the precision train.self_study.precision chooses, with the cache in a temporary folder (everything is generated).
Prints generated tokens per second for each purpose, the counts of kept and refused material by reason, and (on
stderr) a few examples of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.recipes import Material, build_phases  # noqa: E402
from perpetual.rows import Question, Text, from_record  # noqa: E402
from perpetual.self_study import LocalTeacher  # noqa: E402


def model_folder(name: str, scratch: Path) -> Path:
    """models/base-<name> when the pipeline built it, else init.models.<name> loaded as init@ loads it."""
    built = paths.base_model(name)
    if (built / "config.json").exists():
        return built
    from perpetual.models import load_pretrained

    spec = load_params(REPO / "params.yaml").init.models[name]
    model, tokenizer = load_pretrained(spec, name)  # type: ignore[arg-type]
    folder = scratch / name
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def returning(teacher: LocalTeacher) -> Callable[[], LocalTeacher]:
    return lambda: teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="code")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--template", default="chat")
    args = parser.parse_args()

    import datasets

    params = load_params(REPO / "params.yaml")
    settings = params.train.self_study
    rows = [from_record(record) for record in datasets.load_from_disk(str(paths.dataset(args.task)))["train"]]
    chunk_ids = list(dict.fromkeys(row.chunk_id for row in rows if isinstance(row, Text)))[: args.chunks]
    chosen = [row for row in rows if isinstance(row, Text | Question) and row.chunk_id in chunk_ids]
    figures: dict[str, object] = {"model": args.model, "task": args.task, "chunks": len(chunk_ids), "questions": sum(isinstance(r, Question) for r in chosen)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(args.model, Path(scratch))
        for recipe in ("paraphrase", "distill"):
            stats: Counter[str] = Counter()
            teacher = LocalTeacher(folder, args.template, settings, Path(scratch) / "cache" / recipe, 0, stats)
            material = Material(chosen, settings, params.index.context_template, returning(teacher), stats)
            start = time.perf_counter()
            try:
                [phase] = build_phases(recipe, material)
            except Exception as error:  # noqa: BLE001 - a recipe left with nothing is a figure here, not a failure
                phase = []
                print(f"{recipe}: {error}", file=sys.stderr)
            seconds = time.perf_counter() - start
            purpose = "rephrase" if recipe == "paraphrase" else "answer"
            figures[recipe] = {
                "seconds": round(seconds, 1),
                "generated_tokens_per_s": round(stats[f"{purpose}_generated_tokens"] / seconds, 1),
                "precision": teacher.precision,
                **dict(sorted(stats.items())),
            }
            made = [row for row in phase if (isinstance(row, Text) and row not in chosen) or (isinstance(row, Question) and row not in chosen)]
            for row in made[:3]:
                print(f"--- {recipe} ({row.chunk_id}):\n{row.text if isinstance(row, Text) else row.instruction + ' => ' + row.answer}", file=sys.stderr)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
