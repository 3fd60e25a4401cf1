"""Correlation statistics: scipy's coefficients and tests, seeded bootstrap intervals, tests of a difference
between two groups' correlations, and the Benjamini–Hochberg correction (docs/analysis.md).

Bootstrap resamples and label permutations are both written as weights on the observations: a resample is
the count of times each observation is drawn, a permutation is 0/1 membership of one group. The weighted
coefficient of a weight vector equals the plain coefficient of the sample it stands for (ties included:
Spearman ranks are recomputed as weighted mid-ranks), so one compiled kernel serves both, over every x–y
pair of a group at once.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
import zlib
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy import stats

SPEARMAN, PEARSON = "spearman", "pearson"
COEFFICIENTS = (SPEARMAN, PEARSON)
MIN_OBSERVATIONS = 3
EXACT_SPEARMAN_MAX_N = 8  # up to here Spearman's p is exact (all n! orderings), above it scipy's t approximation
FISHER_MIN_OBSERVATIONS = 4  # the standard error of Fisher's z is 1/√(n − 3)


@dataclass(frozen=True)
class Resampling:
    """How intervals and permutation p-values are drawn; recorded in every row's `ci_method` and `test`."""

    resamples: int = 1000
    permutations: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def rng(self, *labels: str) -> np.random.Generator:
        """A generator of its own for each labelled draw, so results do not depend on the order of the work."""
        return np.random.default_rng([self.seed, *(zlib.crc32(label.encode()) for label in labels)])

    @property
    def ci_method(self) -> str:
        return f"bootstrap percentile, {self.resamples} resamples, seed {self.seed}"


@dataclass
class Estimate:
    """One coefficient of one x–y pair in one group, with its bootstrap replicates (for group differences)."""

    n: int
    r: float = math.nan
    p: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    note: str = ""
    n_reference: int | None = None  # a difference's second group
    replicates: np.ndarray = field(default_factory=lambda: np.empty(0))


@numba.njit(cache=True, fastmath=True)  # finite inputs only: lets LLVM vectorize the sums
def _centered(column: np.ndarray, order: np.ndarray, weights: np.ndarray, ranked: bool, out: np.ndarray) -> float:
    """Write the column (or, ranked, its weighted mid-ranks: a tie group of total weight W after weight C ranks
    C + (W+1)/2) minus its weighted mean into out; return the square root of the weighted sum of squares."""
    n = column.shape[0]
    if ranked:
        start = 0
        below = 0.0
        while start < n:
            end = start + 1
            while end < n and column[order[end]] == column[order[start]]:
                end += 1
            tied = 0.0
            for k in range(start, end):
                tied += weights[order[k]]
            rank = below + (tied + 1.0) / 2.0
            for k in range(start, end):
                out[order[k]] = rank
            below += tied
            start = end
    else:
        out[:] = column
    total = 0.0
    weighted = 0.0
    for i in range(n):
        total += weights[i]
        weighted += weights[i] * out[i]
    mean = weighted / total
    squares = 0.0
    for i in range(n):
        out[i] -= mean
        squares += weights[i] * out[i] * out[i]
    return math.sqrt(squares)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _weighted_correlations(columns: np.ndarray, order: np.ndarray, weights: np.ndarray, pairs: np.ndarray,
                           ranked: bool) -> np.ndarray:
    measures, n = columns.shape
    result = np.empty((weights.shape[0], pairs.shape[0]))
    for b in numba.prange(weights.shape[0]):
        w = weights[b]
        centered = np.empty((measures, n))
        spread = np.empty(measures)
        for m in range(measures):
            spread[m] = _centered(columns[m], order[m], w, ranked, centered[m])
        for k in range(pairs.shape[0]):
            first, second = centered[pairs[k, 0]], centered[pairs[k, 1]]
            products = 0.0
            for i in range(n):
                products += w[i] * first[i] * second[i]
            denominator = spread[pairs[k, 0]] * spread[pairs[k, 1]]
            result[b, k] = products / denominator if denominator > 0 else math.nan
    return result


def weighted_correlations(values: np.ndarray, order: np.ndarray, weights: np.ndarray, pairs: np.ndarray,
                          ranked: bool) -> np.ndarray:
    """Pearson r (or, ranked, Spearman ρ) of each column pair [K, 2] of values [n, M] under each weight row [B, n].

    order [M, n]: each column's argsort (`column_orders`). Returns [B, K]; NaN where a column has no spread
    under the weights.
    """
    return _weighted_correlations(np.ascontiguousarray(values.T), order, np.ascontiguousarray(weights),
                                  np.ascontiguousarray(pairs, dtype=np.int64), ranked)


def column_orders(values: np.ndarray) -> np.ndarray:
    """Each column's stable argsort, [M, n], as weighted_correlations wants it."""
    return np.ascontiguousarray(np.argsort(values, axis=0, kind="stable").T)


def bootstrap_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[resamples, n]: how often each of n observations is drawn, n draws with replacement per resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def permutation_weights(n_first: int, n_total: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """[permutations, n_total]: 1 for the n_first observations a random relabelling puts in the first group."""
    labels = np.zeros((permutations, n_total))
    labels[:, :n_first] = 1.0
    return rng.permuted(labels, axis=1)


def scipy_coefficient(x: np.ndarray, y: np.ndarray, coefficient: str) -> tuple[float, float]:
    """(r, two-sided p): Pearson's exact t-test from scipy; Spearman's ρ from scipy with its t approximation,
    or for n ≤ EXACT_SPEARMAN_MAX_N the exact permutation p (the t approximation gives p = 0 for ρ = ±1 at
    n = 3, where 2 of the 6 orderings are as extreme)."""
    test = stats.spearmanr if coefficient == SPEARMAN else stats.pearsonr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = test(x, y)
    r, p = float(result.statistic), float(result.pvalue)
    if coefficient == SPEARMAN and len(x) <= EXACT_SPEARMAN_MAX_N:
        p = exact_spearman_p(x, y)
    return r, p


def spearman_test(n: int) -> str:
    """How the p of a Spearman row over n observations was obtained."""
    if n <= EXACT_SPEARMAN_MAX_N:
        return "spearman, exact over all orderings"
    return "spearman, t approximation (scipy)"


@functools.cache
def _orderings(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))))


def exact_spearman_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of Spearman's ρ over all n! orderings of y against x: #{|ρ*| ≥ |ρ|} / n! (ties as mid-ranks)."""
    rx, ry = stats.rankdata(x) - (len(x) + 1) / 2, stats.rankdata(y)
    ry = ry - ry.mean()
    null = np.abs(ry[_orderings(len(x))] @ rx)  # ρ* ∝ Σ rx·ry*: the norms do not change with the ordering
    return float(np.mean(null >= abs(ry @ rx) * (1 - 1e-12)))


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of the finite replicates (NaN, NaN when there are none)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def estimate_pairs(values: np.ndarray, pairs: list[tuple[int, int]], resampling: Resampling,
                   rng: np.random.Generator) -> dict[tuple[int, int, str], Estimate]:
    """Both coefficients of each column pair of values [n, M] that are all finite, with bootstrap intervals.

    Degenerate pairs (n < 3, a column without spread) get an Estimate with NaN figures and a note.
    """
    n = values.shape[0]
    estimates: dict[tuple[int, int, str], Estimate] = {}
    usable = []
    for i, j in pairs:
        note = _degenerate(values[:, i], values[:, j])
        if note:
            estimates.update({(i, j, c): Estimate(n, note=note) for c in COEFFICIENTS})
        else:
            usable.append((i, j))
    if not usable:
        return estimates
    weights = bootstrap_weights(n, resampling.resamples, rng)
    order = column_orders(values)
    index = np.asarray(usable, dtype=np.int64)
    for coefficient in COEFFICIENTS:
        replicates = weighted_correlations(values, order, weights, index, coefficient == SPEARMAN)
        for k, (i, j) in enumerate(usable):
            r, p = scipy_coefficient(values[:, i], values[:, j], coefficient)
            low, high = percentile_interval(replicates[:, k], resampling.confidence)
            estimates[i, j, coefficient] = Estimate(n, r, p, low, high, replicates=replicates[:, k])
    return estimates


def _degenerate(x: np.ndarray, y: np.ndarray) -> str:
    if len(x) < MIN_OBSERVATIONS:
        return f"n = {len(x)} < {MIN_OBSERVATIONS}"
    flat = [name for name, v in (("x", x), ("y", y)) if np.ptp(v) == 0]
    return f"{' and '.join(flat)} constant" if flat else ""


def fisher_z_test(r_first: float, n_first: int, r_second: float, n_second: int) -> tuple[float, str]:
    """Two-sided p that two independent Pearson correlations are equal (z = (atanh r₁ − atanh r₂)/√(Σ 1/(n−3)))."""
    if min(n_first, n_second) < FISHER_MIN_OBSERVATIONS:
        return math.nan, f"Fisher z needs n ≥ {FISHER_MIN_OBSERVATIONS} in each group"
    if not (math.isfinite(r_first) and math.isfinite(r_second)):
        return math.nan, "a group's r is undefined"
    clip = 1 - 1e-12
    z = (math.atanh(np.clip(r_first, -clip, clip)) - math.atanh(np.clip(r_second, -clip, clip)))
    z /= math.sqrt(1 / (n_first - 3) + 1 / (n_second - 3))
    return float(2 * stats.norm.sf(abs(z))), ""


def permutation_differences(first: np.ndarray, second: np.ndarray, pairs: list[tuple[int, int]],
                            permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Spearman ρ(first) − ρ(second) of each column pair under random relabellings of the pooled rows [P, K]."""
    pooled = np.concatenate([first, second])
    membership = permutation_weights(len(first), len(pooled), permutations, rng)
    order = column_orders(pooled)
    index = np.asarray(pairs, dtype=np.int64)
    return (weighted_correlations(pooled, order, membership, index, True)
            - weighted_correlations(pooled, order, 1.0 - membership, index, True))


def permutation_p(observed: float, null: np.ndarray) -> float:
    """Two-sided permutation p with the observed labelling counted: (1 + #{|d*| ≥ |d|}) / (1 + P)."""
    null = null[np.isfinite(null)]
    if not math.isfinite(observed) or null.size == 0:
        return math.nan
    return float((1 + np.count_nonzero(np.abs(null) >= abs(observed) - 1e-12)) / (1 + null.size))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values over the finite entries of p (the family); NaN stays NaN."""
    p = np.asarray(p, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    return adjusted
