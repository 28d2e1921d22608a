"""Uncertainty and significance for accuracies measured on the same questions."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from scipy.stats import binomtest

from perpetual.records import LETTERS, Mcq


def bootstrap_ci(correct: Sequence[float], samples: int, seed: int, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap over questions, seeded so the interval is reproducible."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (round(float(low), 4), round(float(high), 4))


def mcnemar_exact(first: Sequence[float], second: Sequence[float]) -> dict[str, float]:
    """Exact McNemar test on paired outcomes: only questions where exactly one of the two is right count."""
    if len(first) != len(second):
        raise ValueError("paired outcomes must have equal length")
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    discordant = only_first + only_second
    p_value = 1.0 if discordant == 0 else binomtest(only_second, discordant, 0.5).pvalue
    return {"only_first": only_first, "only_second": only_second, "p_value": round(float(p_value), 6)}


def baselines(mcqs: Sequence[Mcq]) -> dict[str, float]:
    """What a model that never read the text could score by exploiting the MCQ set itself."""
    if not mcqs:
        return {"chance": 0.25, "majority_letter": 0.0, "longest_option": 0.0}
    majority_share = Counter(mcq["answer"] for mcq in mcqs).most_common(1)[0][1] / len(mcqs)
    longest = sum(
        1 for mcq in mcqs if max(range(4), key=lambda i: (len(mcq["options"][i]), -i)) == LETTERS.index(mcq["answer"])
    )
    return {
        "chance": 0.25,
        "majority_letter": round(majority_share, 4),
        "longest_option": round(longest / len(mcqs), 4),
    }
