"""Uncertainty and significance for accuracies: on the same questions (paired), and between groups of chunks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.special import softmax
from scipy.stats import binomtest, entropy, permutation_test, rankdata, wilcoxon

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
    return {"only_first": only_first, "only_second": only_second, "p_value": significant(p_value)}


def significant(p_value: float, digits: int = 4) -> float:
    """A p-value to a few significant digits: rounding to decimals would turn 3e-29 into 0."""
    return float(f"{float(p_value):.{digits}g}")


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


def knowledge_consistency(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]]) -> dict[str, float | int | None]:
    """How far fine-tuning moved the model's beliefs over the options, question by question.

    After "Learning or Self-aligning? Rethinking Instruction Fine-tuning" (Ren et al., 2024): for each question,
    the Spearman rank correlation between the two models' option log-likelihoods (average ranks for ties), and the
    KL divergence KL(p_first || p_second) in nats between their softmax distributions over the options. Returns the
    means over questions; questions where either model scores all options equally have no rank correlation and are
    left out of `spearman` only (`spearman_n` counts those kept).
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired log-likelihoods must have equal shapes")
    if a.size == 0:
        return {"spearman": None, "spearman_n": 0, "kl": None}
    ranks_a, ranks_b = rankdata(a, axis=1), rankdata(b, axis=1)
    centred_a = ranks_a - ranks_a.mean(axis=1, keepdims=True)
    centred_b = ranks_b - ranks_b.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred_a**2).sum(axis=1) * (centred_b**2).sum(axis=1))
    defined = norms > 0
    rho = (centred_a * centred_b).sum(axis=1)[defined] / norms[defined]
    kl = entropy(softmax(a, axis=1), softmax(b, axis=1), axis=1)
    return {
        "spearman": round(float(rho.mean()), 4) if rho.size else None,
        "spearman_n": int(defined.sum()),
        "kl": round(float(kl.mean()), 4),
    }


def wilcoxon_paired(first: Sequence[float], second: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired continuous scores (1.0 when every pair is equal)."""
    if len(first) != len(second):
        raise ValueError("paired scores must have equal length")
    differences = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    if not np.any(differences):
        return 1.0
    return significant(wilcoxon(differences).pvalue)


def cluster_permutation(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]], resamples: int, seed: int) -> dict[str, float | None]:
    """Two-sided permutation test of the difference in mean per-question value, first group minus second, when
    whole clusters (here: chunks, each a list of its questions' values) were assigned to the groups at random.

    The permutations reassign clusters, not questions, keeping each group's number of clusters: that re-enacts the
    draw that made the groups, so the p-value holds although questions about the same chunk are not independent
    (a per-question test would count each chunk's questions as separate evidence). Exact when the clusters have
    no more than `resamples` distinct splits, else `resamples` seeded random splits. The means pool the questions of
    a group (not a mean of chunk means), the same means that the groups' accuracies are. No p-value (None) when
    a group has fewer than two clusters.
    """
    clusters = [np.asarray(cluster, dtype=float) for cluster in (*first, *second)]
    sums = np.array([cluster.sum() for cluster in clusters])
    sizes = np.array([cluster.size for cluster in clusters], dtype=float)
    split = len(first)
    first_size, second_size = sizes[:split].sum(), sizes[split:].sum()
    if first_size == 0 or second_size == 0:
        return {"difference": None, "p_value": None}
    difference = float(sums[:split].sum() / first_size - sums[split:].sum() / second_size)
    if min(split, len(clusters) - split) < 2:
        return {"difference": round(difference, 4), "p_value": None}  # a lone chunk's group has too few splits to test

    def statistic(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        # x and y hold cluster indices; a split that leaves a group no questions (empty clusters only) counts as 0.
        with np.errstate(invalid="ignore", divide="ignore"):
            value = sums[x].sum(axis=axis) / sizes[x].sum(axis=axis) - sums[y].sum(axis=axis) / sizes[y].sum(axis=axis)
        return np.nan_to_num(value)

    result = permutation_test(
        (np.arange(split), np.arange(split, len(clusters))), statistic, permutation_type="independent", vectorized=True,
        n_resamples=resamples, alternative="two-sided", axis=-1, rng=np.random.default_rng(seed),
    )  # fmt: skip
    return {"difference": round(difference, 4), "p_value": significant(min(1.0, float(result.pvalue)))}
