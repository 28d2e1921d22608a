"""Where each stage reads and writes; dvc.yaml names the same paths."""

from __future__ import annotations

from pathlib import Path

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
