"""Pick the teacher backend named in params."""

from __future__ import annotations

from perpetual.config import TeacherParams
from perpetual.teacher.base import Teacher


def make_teacher(params: TeacherParams, seed: int, near_duplicate_threshold: float = 0.9) -> Teacher:
    if params.backend == "offline":
        from perpetual.teacher.offline import OfflineTeacher

        return OfflineTeacher(seed=seed, near_duplicate_threshold=near_duplicate_threshold)
    from perpetual.teacher.openai_backend import OpenAITeacher

    return OpenAITeacher.from_params(params)
