"""perpetual/statistics.py: bootstrap intervals, exact McNemar test, no-reading baselines, the chunk permutation test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import spearmanr

from perpetual.records import Mcq
from perpetual.statistics import (
    baselines,
    bootstrap_ci,
    cluster_permutation,
    knowledge_consistency,
    mcnemar_exact,
    significant,
    wilcoxon_paired,
)


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


def test_mcnemar_keeps_tiny_p_values() -> None:
    # 100 discordant pairs all one way: p = 2 * 0.5**100, which rounding to 6 decimals used to turn into 0.
    result = mcnemar_exact([0.0] * 100, [1.0] * 100)
    assert 0 < result["p_value"] == pytest.approx(2 * 0.5**100, rel=1e-3)
    assert significant(0.123456789) == 0.1235 and significant(3.14159e-29) == 3.142e-29


def test_knowledge_consistency_matches_scipy_per_question() -> None:
    rng = np.random.default_rng(0)
    first = rng.normal(size=(40, 4))
    second = first + rng.normal(scale=0.7, size=(40, 4))
    second[0] = [1.0, 1.0, 2.0, 2.0]  # ties get average ranks, as in spearmanr
    result = knowledge_consistency(first.tolist(), second.tolist())
    expected_rho = np.mean([spearmanr(a, b).statistic for a, b in zip(first, second)])
    p, q = softmax(first, axis=1), softmax(second, axis=1)
    expected_kl = np.mean((p * np.log(p / q)).sum(axis=1))
    assert result["spearman"] == pytest.approx(expected_rho, abs=1e-4)
    assert result["kl"] == pytest.approx(expected_kl, abs=1e-4)
    assert result["spearman_n"] == 40


def test_knowledge_consistency_edges() -> None:
    same = [[-1.0, -2.0, -3.0, -4.0], [-4.0, -1.0, -2.0, -3.0]]
    assert knowledge_consistency(same, same) == {"spearman": 1.0, "spearman_n": 2, "kl": 0.0}
    reversed_ = [[-value for value in row] for row in same]  # the opposite preference order
    assert knowledge_consistency(same, reversed_)["spearman"] == -1.0
    # Shifting every option by the same amount changes nothing: softmax and ranks ignore it.
    shifted = [[value - 5.0 for value in row] for row in same]
    assert knowledge_consistency(same, shifted)["kl"] == pytest.approx(0.0, abs=1e-9)
    # A model that scores all options equally has no ranking: left out of rho, still counted in KL.
    flat = knowledge_consistency([[0.0, 0.0, 0.0, 0.0], same[0]], [same[0], same[0]])
    assert flat["spearman_n"] == 1 and flat["spearman"] == 1.0 and flat["kl"] > 0
    assert knowledge_consistency([], []) == {"spearman": None, "spearman_n": 0, "kl": None}
    with pytest.raises(ValueError):
        knowledge_consistency(same, same[:1])


def test_wilcoxon_paired() -> None:
    rng = np.random.default_rng(1)
    before = rng.normal(size=60)
    assert wilcoxon_paired(before, before) == 1.0
    assert wilcoxon_paired(before, before - 1.0) < 1e-6
    assert wilcoxon_paired(before, before + rng.normal(scale=0.01, size=60)) > 0.01
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0], [1.0, 2.0])


def test_cluster_permutation_clear_difference_small_p_none_large_p() -> None:
    rng = np.random.default_rng(0)
    # 20 chunks of 5 questions each side; learning gains in {-1, 0, 1}: mostly 1 with flashcards, mostly 0 without.
    helped = [rng.choice([1, 1, 1, 0], size=5).tolist() for _ in range(20)]
    not_helped = [rng.choice([0, 0, 1, -1], size=5).tolist() for _ in range(20)]
    clear = cluster_permutation(helped, not_helped, resamples=2000, seed=0)
    assert clear["difference"] == pytest.approx(np.mean(helped) - np.mean(not_helped), abs=1e-4) and clear["difference"] > 0.5
    assert clear["p_value"] is not None and clear["p_value"] < 0.01
    assert cluster_permutation(not_helped, helped, resamples=2000, seed=0)["p_value"] == clear["p_value"]  # two-sided
    same = [rng.choice([1, 0, 0, -1], size=5).tolist() for _ in range(40)]
    none = cluster_permutation(same[:20], same[20:], resamples=2000, seed=0)
    assert abs(none["difference"]) < 0.2 and none["p_value"] > 0.2
    assert cluster_permutation(same[:20], same[20:], resamples=2000, seed=0) == none  # seeded


def test_cluster_permutation_permutes_chunks_not_questions() -> None:
    # 3 chunks against 3, all of one chunk's questions alike: only C(6, 3) = 20 splits exist, so the smallest
    # two-sided p is 2/20 however many questions each chunk holds (a per-question test would call this 1e-17).
    result = cluster_permutation([[1.0] * 30] * 3, [[0.0] * 30] * 3, resamples=9999, seed=0)
    assert result == {"difference": 1.0, "p_value": 0.1}
    # Pooled over questions, not a mean of chunk means: one big chunk weighs more than two small ones.
    assert cluster_permutation([[1.0] * 8, [0.0] * 2], [[0.0], [0.0]], resamples=100, seed=0)["difference"] == 0.8
    assert cluster_permutation([[1.0, 0.0]] * 2, [[0.0, 1.0]] * 3, resamples=100, seed=0) == {"difference": 0.0, "p_value": 1.0}
    assert cluster_permutation([], [[1.0]], resamples=100, seed=0) == {"difference": None, "p_value": None}
    assert cluster_permutation([[1.0]], [[0.0], [0.0]], resamples=100, seed=0) == {"difference": 1.0, "p_value": None}
