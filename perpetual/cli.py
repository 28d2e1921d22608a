"""The shared prologue of every stage script: parse --task/--model/--round, load and validate params.yaml."""

from __future__ import annotations

import argparse

from perpetual.config import Params, load_params


def stage_args(
    description: str | None, *, task: bool = False, model: bool = False, source: bool = False, round: bool = False
) -> tuple[argparse.Namespace, Params]:
    """Parse the stage's arguments and return them with the validated params; unknown names are user errors.

    `source`: --task names an entry of fetch.sources or fetch.remote_sources (dvc.yaml defines a fetch stage for
    each, whether or not pipeline.tasks uses it). `round`: --round names a round of rounds.plan."""
    parser = argparse.ArgumentParser(description=description)
    if task or source:
        parser.add_argument("--task", required=True)
    if model:
        parser.add_argument("--model", required=True)
    if round:
        parser.add_argument("--round", required=True)
    args = parser.parse_args()
    params = load_params()
    if task:
        params.require_task(args.task)
    if source:
        params.require_source(args.task)
    if model:
        params.require_model(args.model)
    if round:
        params.require_round(args.round)
    return args, params
