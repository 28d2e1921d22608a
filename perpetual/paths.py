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


def index(task: str) -> Path:
    return DATA / "index" / task


def retrieved(task: str) -> Path:
    return DATA / "retrieved" / f"{task}.jsonl"


def base_model(model: str) -> Path:
    return MODELS / f"base-{model}"


def trained_model(task: str, model: str) -> Path:
    return MODELS / f"{task}-{model}"


def checkpoints(task: str, model: str) -> Path:
    # Outside the DVC out so a killed run keeps its checkpoints for `train.resume: auto`.
    return Path("checkpoints") / f"{task}-{model}"


def predictions(task: str, model: str) -> Path:
    return DATA / "predictions" / f"{task}-{model}.jsonl"


def stage_metrics(stage: str, name: str) -> Path:
    return METRICS / stage / f"{name}.json"
