"""Pick the teacher backend named in params."""

from __future__ import annotations

from perpetual.config import TeacherParams
from perpetual.teacher.base import Teacher


def make_teacher(params: TeacherParams, seed: int, near_duplicate_threshold: float) -> Teacher:
    """`seed` is pipeline.seed, `near_duplicate_threshold` generate's (the offline teacher's own drafts are
    deduplicated at it)."""
    if params.backend == "offline":
        from perpetual.teacher.offline import OfflineTeacher

        return OfflineTeacher(seed=seed, near_duplicate_threshold=near_duplicate_threshold)
    if params.transport != "sync":
        from perpetual.teacher.batch import BatchTeacher

        return BatchTeacher.from_params(params)
    from perpetual.teacher.openai_backend import OpenAITeacher

    return OpenAITeacher.from_params(params)
