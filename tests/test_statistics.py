"""perpetual/statistics.py: bootstrap intervals, exact McNemar test, no-reading baselines."""

from __future__ import annotations

import numpy as np
import pytest

from perpetual.records import Mcq
from perpetual.statistics import baselines, bootstrap_ci, mcnemar_exact


def test_bootstrap_ci_contains_mean_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    correct = (rng.random(200) < 0.62).astype(float).tolist()
    mean = sum(correct) / len(correct)
    low, high = bootstrap_ci(correct, samples=1000, seed=0)
    assert low < mean < high
    assert 0.0 <= low and high <= 1.0
    assert 0.05 < high - low < 0.2  # about +-1.96 * sqrt(p(1-p)/n) = +-0.067
    assert bootstrap_ci(correct, samples=1000, seed=0) == (low, high)
    assert bootstrap_ci(correct, samples=1000, seed=1) != (low, high)


def test_bootstrap_ci_narrows_with_alpha_and_handles_edges() -> None:
    correct = [1.0, 0.0] * 50
    wide = bootstrap_ci(correct, samples=2000, seed=0, alpha=0.01)
    narrow = bootstrap_ci(correct, samples=2000, seed=0, alpha=0.2)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    assert bootstrap_ci([1.0] * 10, samples=100, seed=0) == (1.0, 1.0)
    assert bootstrap_ci([], samples=100, seed=0) == (0.0, 0.0)


def test_mcnemar_known_table() -> None:
    first = [0.0] * 10 + [1.0] * 5 + [0.0] * 5
    second = [1.0] * 10 + [1.0] * 5 + [0.0] * 5  # only_second = 10, only_first = 0; concordant pairs ignored
    result = mcnemar_exact(first, second)
    assert result["only_second"] == 10 and result["only_first"] == 0
    assert result["p_value"] == pytest.approx(2 * 0.5**10, abs=1e-6)  # 0.001953
    assert mcnemar_exact(second, first)["p_value"] == pytest.approx(2 * 0.5**10, abs=1e-6)


def test_mcnemar_balanced_and_identical() -> None:
    identical = [1.0, 0.0, 1.0, 1.0]
    assert mcnemar_exact(identical, identical) == {"only_first": 0, "only_second": 0, "p_value": 1.0}
    balanced = mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1])
    assert balanced["p_value"] == pytest.approx(1.0)
    # 1 vs 6 discordant: two-sided exact p = 2 * (1 + 7) / 2**7 = 0.125
    assert mcnemar_exact([1] + [0] * 6, [0] + [1] * 6)["p_value"] == pytest.approx(0.125, abs=1e-6)


def test_mcnemar_rejects_unpaired_lengths() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1])


def _mcq(answer: str, options: list[str]) -> Mcq:
    return Mcq(mcq_id=answer, chunk_id="c", question="q?", options=options, answer=answer, cloze_prefix="", kind="word")


def test_baselines_on_hand_made_mcqs() -> None:
    mcqs = [
        _mcq("A", ["longest one", "b", "c", "d"]),  # longest correct
        _mcq("A", ["a", "bb", "c", "d"]),  # longest is B: wrong
        _mcq("A", ["aa", "bb", "c", "d"]),  # tie A/B: the first (A) is picked -> correct
        _mcq("C", ["a", "b", "c", "dddd"]),  # longest is D: wrong
        _mcq("D", ["a", "b", "c", "dddd"]),  # longest correct
    ]
    result = baselines(mcqs)
    assert result == {"chance": 0.25, "majority_letter": 0.6, "longest_option": 0.6}


def test_baselines_empty() -> None:
    assert baselines([]) == {"chance": 0.25, "majority_letter": 0.0, "longest_option": 0.0}
