"""The shared prologue of every stage script: parse --task/--model, load and validate params.yaml."""

from __future__ import annotations

import argparse

from perpetual.config import Params, load_params


def stage_args(description: str | None, *, task: bool = False, model: bool = False) -> tuple[argparse.Namespace, Params]:
    """Parse the stage's arguments and return them with the validated params; unknown names are user errors."""
    parser = argparse.ArgumentParser(description=description)
    if task:
        parser.add_argument("--task", required=True)
    if model:
        parser.add_argument("--model", required=True)
    args = parser.parse_args()
    params = load_params()
    if task:
        params.require_task(args.task)
    if model:
        params.require_model(args.model)
    return args, params
