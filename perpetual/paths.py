"""Where each stage reads and writes; dvc.yaml names the same paths."""

from __future__ import annotations

from pathlib import Path

from perpetual.rounds_params import BASE

DATA = Path("data")
MODELS = Path("models")
METRICS = Path("metrics")


def raw(task: str) -> Path:
    return DATA / "raw" / f"{task}.jsonl"


def chunks(task: str) -> Path:
    return DATA / "chunks" / f"{task}.jsonl"


def flashcards(task: str) -> Path:
    return DATA / "generated" / task / "flashcards.jsonl"


def mcqs(task: str) -> Path:
    return DATA / "generated" / task / "mcq.jsonl"


def dataset(task: str) -> Path:
    return DATA / "datasets" / task


def flashcard_groups(task: str) -> Path:
    """Which chunks were trained with their flashcards and which on raw text only (assemble.flashcard_holdout)."""
    return dataset(task) / "flashcard_holdout.json"


def index(task: str) -> Path:
    return DATA / "index" / task


def retrieved(task: str) -> Path:
    return DATA / "retrieved" / f"{task}.jsonl"


def init_model(model: str) -> Path:
    """What init@<model> builds or loads: a tiny model from scratch (tokenizer, copy lessons) or a pretrained one."""
    return MODELS / f"init-{model}"


def trained_model(task: str, model: str) -> Path:
    return MODELS / f"{task}-{model}"


def checkpoints(task: str, model: str) -> Path:
    # Outside the DVC out so a killed run keeps its checkpoints for `train.resume: auto`.
    return Path("checkpoints") / f"{task}-{model}"


def git_cache() -> Path:
    """Clones of git sources, reused across runs (outside DVC: fetch@<task> records the pinned commit)."""
    return DATA / "cache" / "git"


def loss_curve(task: str, model: str) -> Path:
    """dvclive's folder for train@<task>-<model>'s loss curve (dvc.yaml: plots)."""
    return Path("dvclive") / "train" / f"{task}-{model}"


def predictions(task: str, model: str) -> Path:
    return DATA / "predictions" / f"{task}-{model}.jsonl"


def stage_metrics(stage: str, name: str) -> Path:
    return METRICS / stage / f"{name}.json"


def base_model(model: str) -> Path:
    """The model evaluate@ scores as "base" and retention compares against: the one knowledge injection starts from.

    Written by instruct@<model>: the instruction-tuned tiny model, or a copy of models/init-<model> when instruct.enabled is false.
    The one place the pipeline names it (dvc.yaml's train and evaluate deps name the same folder).
    """
    return MODELS / f"base-{model}"


def retention_predictions(task: str, model: str) -> Path:
    return DATA / "predictions" / f"{task}-{model}.retention.jsonl"


def base_retention_folder(model: str) -> Path:
    """base-retention@<model>: the base model's answers to the retention set, one file per template (base_retention)."""
    return DATA / "predictions" / f"base-{model}.retention"


def base_retention(model: str, template: str) -> Path:
    """The base model's retention answers asked in `template` (train.template, or a task's override of it)."""
    return base_retention_folder(model) / f"{template}.jsonl"


def recipe_rows(task: str, model: str) -> Path:
    """recipe@<task>-<model>'s training rows, each with the phase it is trained in (perpetual/recipes.py)."""
    return DATA / "recipes" / f"{task}-{model}.jsonl"


def self_study_cache(task: str, model: str) -> Path:
    """The local teacher's generations for the cell (a persistent DVC out: a rerun generates nothing twice)."""
    return DATA / "cache" / "self-study" / f"{task}-{model}"


def teacher_batch(cache_dir: str | Path) -> Path:
    """A batch transport's work folder, inside the teacher's response cache of one task (generate.teacher.cache_dir/<task>):
    the requests and results files, and the state file. Removed once every reply is in the cache."""
    return Path(cache_dir) / "batch"


def teacher_batch_state(cache_dir: str | Path) -> Path:
    """The submitted batch (its id, input file and request ids), written at submit: a run killed while polling resumes it."""
    return teacher_batch(cache_dir) / "state.json"


# ---------------------------------------------------------------- rounds (perpetual/rounds.py, docs/rounds.md)
def round_folder(name: str) -> Path:
    """Everything of round `name` but its models. data/rounds/base (in git) is what round 1 follows: nothing."""
    return DATA / "rounds" / name


def round_rows(name: str) -> Path:
    """round-data@<round>: the round's own training rows (its task's assembled rows, of its slice)."""
    return round_folder(name) / "rows.jsonl"


def round_union(name: str) -> Path:
    """round-data@<round>: the MCQs, chunks and flashcards of every round up to this one, each with its round."""
    return round_folder(name) / "union"


def union_mcqs(name: str) -> Path:
    return round_union(name) / "mcq.jsonl"


def union_chunks(name: str) -> Path:
    return round_union(name) / "chunks.jsonl"


def union_flashcards(name: str) -> Path:
    return round_union(name) / "flashcards.jsonl"


def round_model(name: str, model: str) -> Path:
    """train-round@<round>: one model per replay arm, `<arm>/` inside. Beside models/base-<model>, so that dvc.yaml
    names the model a round starts from as models/<after>-<model> for the first round (after: base) and the others."""
    return MODELS / f"{name}-{model}"


def round_arm_model(name: str, model: str, arm: str) -> Path:
    return round_model(name, model) / arm


def round_start(after: str, model: str, arm: str) -> Path:
    """The model an arm's round starts from: the base model for the first round, else the round before's model of
    the same arm."""
    return base_model(model) if after == BASE else round_arm_model(after, model, arm)


def round_checkpoints(name: str, model: str, arm: str) -> Path:
    return Path("checkpoints") / "rounds" / f"{name}-{model}" / arm


def round_self_study_cache(name: str, model: str) -> Path:
    return DATA / "cache" / "self-study" / f"round-{name}-{model}"


def round_scores(name: str) -> Path:
    """score-round@<round>: each arm's model after the round, closed-book on every MCQ of the union."""
    return round_folder(name) / "scores.jsonl"


def round_retention(name: str) -> Path:
    """score-round@<round>: each arm's greedy answers to the retention set after the round."""
    return round_folder(name) / "retention.jsonl"


def round_base(name: str) -> Path:
    """rag-round@<round>: the base model closed-book on the round's own MCQs, and with RAG over the union's chunks on
    every MCQ of the union."""
    return round_folder(name) / "base.jsonl"


def round_base_retention(name: str) -> Path:
    """rag-round@<round>: the base model's retention answers (the first round's; empty for the others)."""
    return round_folder(name) / "base-retention.jsonl"


def round_history(name: str) -> Path:
    """report-round@<round>: every prediction of the rounds up to this one (the round before's history, then this
    round's), what the forgetting matrix so far is computed from."""
    return round_folder(name) / "history.jsonl"


def round_report(model: str, name: str, suffix: str) -> Path:
    """report-round@<round>: the forgetting matrix and the rest after the round, metrics/rounds/<model>/<round> with
    `suffix` .json, .md or .png."""
    return METRICS / "rounds" / model / f"{name}{suffix}"
