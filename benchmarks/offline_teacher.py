"""The offline teacher at the speed of real corpora (issue 23): generate's teacher and cleaning on about 600 chunks
of real papers, in CPU and wall seconds (target: under 1 minute for 600 chunks).

    .venv/bin/python benchmarks/offline_teacher.py [--chunks 600] [--papers PATH ...] [--fill lm-eval|metadata] [--wrap 90]
                                                   [--rounds 3] [--baseline REV] [--profile FILE]

The corpus, one task, read and chunked as the pipeline reads a papers source (perpetual/papers.py cleaning, the
bibliography dropped; params.yaml's chunk settings):
1. the papers under each --papers path (.md, .txt, .pdf; default /work/shared/seeds, the Perpetual paper and
   related studies, where it exists);
2. then, up to --chunks chunks, real text that ships inside the installed packages: `lm-eval` (default), the task
   READMEs of the lm_eval package, each its benchmark paper's abstract, citation and notes; or `metadata`, the
   packages' long descriptions (dist-info METADATA: changelogs full of versions and identifiers, denser in facts);
3. each line wrapped at --wrap characters (default 90), as pdfminer gives a PDF's typeset lines: a statement ends at
   a line's end (perpetual/teacher/statements.py), so a paper read from its PDF offers many more questions than the
   same paper with a paragraph a line (600 chunks of these papers: 1,741 MCQ drafts wrapped, 706 not).
Then generate's path as the stage runs it: the offline teacher, clean_flashcards, clean_mcqs with
generate.max_mcqs_per_task.

Printed per round: MCQ drafts (statements with distractors to be had and no echo), distractor sets made, MCQs and
flashcards kept, CPU seconds (time.process_time, this process only: on a busy machine wall time is not the
teacher's) and wall seconds; the first round is a fresh process's, as the stage runs. --baseline REV runs the same
corpus through the perpetual package of git revision REV (every draft's distractors made, then the cap, before
issue 23) in a subprocess, and says whether it kept the same items, byte for byte.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perpetual.records import Chunk

REPO = Path(__file__).resolve().parents[1]
SEEDS = Path("/work/shared/seeds")


def build_corpus(papers: list[Path], fill: str, wrap: int, chunks_wanted: int, folder: Path) -> list[Chunk]:
    """Copy the corpus into `folder` (one subfolder per source, in order), fetch it as a papers source, wrap its
    lines at `wrap` characters (0: none), chunk it."""
    from perpetual.chunking import chunk_documents
    from perpetual.config import load_params
    from perpetual.fetch_params import PapersSource
    from perpetual.sources import fetch

    for number, path in enumerate(papers):
        target = folder / f"{number:02d}-{path.name}"
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            target.mkdir()
            shutil.copy(path, target / path.name)
    filler = folder / f"{len(papers):02d}-{fill}"
    for name, text in _filler(fill):
        (filler / name).parent.mkdir(parents=True, exist_ok=True)
        (filler / name).write_text(text)
    params = load_params(REPO / "params.yaml")
    source = PapersSource(kind="papers", path=str(folder), drop_references=True, drop_appendices=False)
    documents = fetch("papers", source, folder / ".git-cache").documents
    if wrap:
        for document in documents:
            lines = document["text"].split("\n")
            document["text"] = "\n".join(textwrap.fill(line, wrap) if line.strip() else line for line in lines)
    chunks, _ = chunk_documents(documents, params.chunk)
    if len(chunks) < chunks_wanted:
        sys.exit(f"only {len(chunks)} chunks in the corpus, {chunks_wanted} wanted")
    return chunks[:chunks_wanted]


def _filler(fill: str) -> list[tuple[str, str]]:
    """(relative path, text) of the real text that fills the corpus up, in a fixed order."""
    if fill == "lm-eval":
        import lm_eval

        tasks = Path(lm_eval.__file__).parent / "tasks"
        return [(path.relative_to(tasks).as_posix(), path.read_text(errors="replace")) for path in sorted(tasks.rglob("README.md"))]
    import importlib.metadata

    found = []
    for distribution in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        text = distribution.read_text("METADATA")
        if text:
            found.append((f"{distribution.metadata['Name']}/METADATA.md", text))
    return found


def measure(chunks: list[Chunk], rounds: int, profile: Path | None) -> dict[str, Any]:
    """Generate's teacher and cleaning on the chunks, `rounds` times: figures per round and the items kept."""
    from perpetual.config import load_params
    from perpetual.teacher.offline import OfflineTeacher
    from perpetual.teacher.quality import QualityReport, clean_flashcards, clean_mcqs

    params = load_params(REPO / "params.yaml")
    settings, seed = params.generate, params.pipeline.seed
    figures = []
    for round_ in range(rounds):
        profiler = cProfile.Profile() if profile and round_ == 0 else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        teacher = OfflineTeacher(seed=seed, near_duplicate_threshold=settings.near_duplicate_threshold)
        result = teacher.generate(chunks, settings.flashcards_per_chunk, settings.mcqs_per_chunk)
        drafts = result.mcqs
        deferred = sum(getattr(draft, "make_distractors", None) is not None for draft in drafts)
        report = QualityReport()
        flashcards = clean_flashcards(result.flashcards, settings.near_duplicate_threshold, report)
        mcqs = clean_mcqs(drafts, flashcards, settings.near_duplicate_threshold, seed, report, settings.max_mcqs_per_task)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler and profile:
            profiler.dump_stats(profile)
        figures.append(
            {
                "mcq_drafts": len(drafts),
                # Before issue 23 every draft came with its distractors; now only the MCQs kept get them.
                "distractor_sets_made": len(drafts) - deferred + (len(mcqs) if deferred else 0),
                "mcqs_kept": len(mcqs),
                "flashcards_kept": len(flashcards),
                "cpu_s": round(cpu, 2),
                "wall_s": round(wall, 2),
            }
        )
    kept = {"flashcards": flashcards, "mcqs": mcqs, "stats": result.stats, "dropped": report.as_metrics()}
    return {"rounds": figures, "digest": hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()}


def baseline(revision: str, corpus: Path, rounds: int) -> dict[str, Any]:
    """`measure` with the perpetual package of `revision` (this script's own code, that package imported)."""
    with tempfile.TemporaryDirectory(prefix="perpetual-baseline-") as tree:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "perpetual"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        command = [sys.executable, __file__, "--worker", str(corpus), "--tree", tree, "--rounds", str(rounds)]
        env = {**os.environ, "PYTHONPATH": tree}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"the baseline failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)


def show(label: str, figures: dict[str, Any]) -> None:
    for number, row in enumerate(figures["rounds"], 1):
        print(f"{label} round {number}: " + ", ".join(f"{key} {value}" for key, value in row.items()))
    first, best = figures["rounds"][0]["cpu_s"], min(row["cpu_s"] for row in figures["rounds"])
    print(f"{label}: {first} CPU s in a fresh process (as the stage runs: py3langid's model loaded), best {best}; "
          f"items kept sha256 {figures['digest'][:16]}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=600)
    parser.add_argument("--papers", type=Path, nargs="*", default=[SEEDS] if SEEDS.is_dir() else [])
    parser.add_argument("--fill", choices=["lm-eval", "metadata"], default="lm-eval")
    parser.add_argument("--wrap", type=int, default=90, help="wrap lines at this many characters, as a PDF gives them (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also run the perpetual package of this git revision")
    parser.add_argument("--baseline-rounds", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="cProfile stats of the first round, for pstats or snakeviz")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # a baseline: a corpus file in, figures out
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        sys.path.insert(0, args.tree)
        chunks = [json.loads(line) for line in args.worker.read_text().splitlines()]
        print(json.dumps(measure(chunks, args.rounds, None)))
        return
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="perpetual-corpus-") as folder:
        started = time.perf_counter()
        chunks = build_corpus(args.papers, args.fill, args.wrap, args.chunks, Path(folder) / "papers")
        by_source = Counter(chunk["source"].split("/", 1)[0] for chunk in chunks)
        sizes = sorted(len(chunk["text"]) for chunk in chunks)
        print(f"corpus: {len(chunks)} chunks ({', '.join(f'{n} from {s}' for s, n in by_source.items())}), median "
              f"{sizes[len(sizes) // 2]} characters; read and chunked in {time.perf_counter() - started:.1f} s wall")  # fmt: skip
        current = measure(chunks, args.rounds, args.profile)
        show("now", current)
        if args.baseline:
            corpus = Path(folder) / "chunks.jsonl"
            corpus.write_text("".join(json.dumps(chunk) + "\n" for chunk in chunks))
            before = baseline(args.baseline, corpus, args.baseline_rounds)
            show(f"at {args.baseline}", before)
            same = "the same items" if before["digest"] == current["digest"] else "DIFFERENT items"
            ratio = before["rounds"][0]["cpu_s"] / current["rounds"][0]["cpu_s"]
            print(f"kept: {same}; {ratio:.0f}x less CPU time in a fresh process")


if __name__ == "__main__":
    main()
