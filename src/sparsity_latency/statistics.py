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
import zlib
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
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
def _centered(column: np.ndarray, order: np.ndarray, group_end: np.ndarray, weights: np.ndarray, ranked: bool,
              out: np.ndarray) -> float:
    """Write the column (or, ranked, its weighted mid-ranks: a tie group of total weight W after weight C ranks
    C + (W+1)/2) minus its weighted mean into out; return the square root of the weighted sum of squares.

    group_end[k]: for the first sorted position k of a tie group, the position after its last."""
    n = column.shape[0]
    if ranked:
        start = 0
        below = 0.0
        while start < n:
            end = group_end[start]
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
def _weighted_correlations(columns: np.ndarray, order: np.ndarray, group_end: np.ndarray, weights: np.ndarray,
                           pairs: np.ndarray, ranked: bool) -> np.ndarray:
    measures, n = columns.shape
    result = np.empty((weights.shape[0], pairs.shape[0]))
    for b in numba.prange(weights.shape[0]):
        w = weights[b]
        centered = np.empty((measures, n))
        spread = np.empty(measures)
        for m in range(measures):
            spread[m] = _centered(columns[m], order[m], group_end[m], w, ranked, centered[m])
        for k in range(pairs.shape[0]):
            first, second = centered[pairs[k, 0]], centered[pairs[k, 1]]
            products = 0.0
            for i in range(n):
                products += w[i] * first[i] * second[i]
            denominator = spread[pairs[k, 0]] * spread[pairs[k, 1]]
            result[b, k] = products / denominator if denominator > 0 else math.nan
    return result


def _tie_group_ends(columns: np.ndarray, order: np.ndarray) -> np.ndarray:
    """[M, n]: at the sorted position where a tie group starts, the position after it ends (elsewhere 0)."""
    measures, n = columns.shape
    ends = np.zeros((measures, n), dtype=np.int64)
    ordered = np.take_along_axis(columns, order, axis=1)
    for m in range(measures):
        starts = np.flatnonzero(np.r_[True, ordered[m, 1:] != ordered[m, :-1]])
        ends[m, starts] = np.r_[starts[1:], n]
    return ends


def weighted_correlations(values: np.ndarray, order: np.ndarray, weights: np.ndarray, pairs: np.ndarray,
                          ranked: bool) -> np.ndarray:
    """Pearson r (or, ranked, Spearman ρ) of each column pair [K, 2] of values [n, M] under each weight row [B, n].

    order [M, n]: each column's argsort (`column_orders`). Returns [B, K]; NaN where a column has no spread
    under the weights.
    """
    used, local = np.unique(np.asarray(pairs, dtype=np.int64), return_inverse=True)  # only the columns pairs use
    columns, order = np.ascontiguousarray(values[:, used].T), np.ascontiguousarray(order[used])
    return _weighted_correlations(columns, order, _tie_group_ends(columns, order), np.ascontiguousarray(weights),
                                  local.reshape(-1, 2), ranked)


def column_orders(values: np.ndarray) -> np.ndarray:
    """Each column's stable argsort, [M, n], as weighted_correlations wants it."""
    return np.ascontiguousarray(np.argsort(values, axis=0, kind="stable").T)


@numba.njit(cache=True)
def _counts(draws: np.ndarray) -> np.ndarray:
    """[B, n] indices drawn → [B, n] how often each index was drawn in its row."""
    counts = np.zeros(draws.shape)
    for b in range(draws.shape[0]):
        for i in range(draws.shape[1]):
            counts[b, draws[b, i]] += 1.0
    return counts


@numba.njit(cache=True)
def _memberships(swaps: np.ndarray, n_total: int) -> np.ndarray:
    """A partial Fisher–Yates shuffle per row of swaps [P, k] (swaps[p, i] drawn from [i, n_total)): 1 for the
    k observations it picks — a uniform k-subset, whatever order the index array was left in by the row before."""
    members = np.zeros((swaps.shape[0], n_total))
    index = np.arange(n_total)
    for p in range(swaps.shape[0]):
        for i in range(swaps.shape[1]):
            j = swaps[p, i]
            index[i], index[j] = index[j], index[i]
        for i in range(swaps.shape[1]):
            members[p, index[i]] = 1.0
    return members


def bootstrap_weights(n: int, resamples: int, rng: np.random.Generator,
                      clusters: np.ndarray | None = None) -> np.ndarray:
    """[resamples, n]: how often each of n observations is drawn, n draws with replacement per resample.

    With `clusters` (a label per observation, e.g. its run), whole clusters are drawn: as many draws as there
    are clusters, each bringing all its observations (the cluster bootstrap, for observations that are not
    independent within a cluster)."""
    if clusters is None:
        return _counts(rng.integers(0, n, size=(resamples, n), dtype=np.int32))
    codes, labels = pd.factorize(clusters)
    return np.take(_counts(rng.integers(0, len(labels), size=(resamples, len(labels)), dtype=np.int32)), codes, axis=1)


def permutation_weights(n_first: int, n_total: int, permutations: int, rng: np.random.Generator,
                        clusters: np.ndarray | None = None) -> np.ndarray:
    """[permutations, n_total]: 1 for the n_first observations a random relabelling puts in the first group.

    With `clusters` (labels of the n_total observations, the first group's n_first first and no cluster in both
    groups), whole clusters are relabelled."""
    if clusters is not None:
        codes, labels = pd.factorize(clusters)
        first = len(pd.unique(codes[:n_first]))
        return np.take(permutation_weights(first, len(labels), permutations, rng), codes, axis=1)
    swaps = rng.integers(np.arange(n_first), n_total, size=(permutations, n_first), dtype=np.int64)
    return _memberships(swaps, n_total)


def coefficients(values: np.ndarray, pairs: np.ndarray, coefficient: str) -> tuple[np.ndarray, np.ndarray]:
    """(r, two-sided p) of each column pair [K, 2] of values [n, M], all pairs at once, as scipy computes them:
    Pearson with `pearsonr`'s exact p (r's beta distribution), Spearman with `spearmanr`'s t approximation —
    or, for n ≤ EXACT_SPEARMAN_MAX_N, the exact p over all orderings (the t approximation gives p = 0 for
    ρ = ±1 at n = 3, where 2 of the 6 orderings are as extreme). Tests hold both to scipy's own functions."""
    n = len(values)
    used, local = np.unique(pairs, return_inverse=True)
    values, pairs = values[:, used], local.reshape(-1, 2)
    data = stats.rankdata(values, axis=0) if coefficient == SPEARMAN else values
    centered = data - data.mean(axis=0)
    norms = np.sqrt((centered * centered).sum(axis=0))
    first, second = pairs[:, 0], pairs[:, 1]
    r = np.clip((centered[:, first] * centered[:, second]).sum(axis=0) / (norms[first] * norms[second]), -1, 1)
    if coefficient == PEARSON:
        p = 2 * stats.beta.sf(np.abs(r), n / 2 - 1, n / 2 - 1, loc=-1, scale=2)
    elif n <= EXACT_SPEARMAN_MAX_N:
        p = np.array([exact_spearman_p(values[:, i], values[:, j]) for i, j in pairs])
    else:
        with np.errstate(divide="ignore"):
            t = np.abs(r) * np.sqrt((n - 2) / ((1 + np.abs(r)) * (1 - np.abs(r))))
        p = 2 * stats.t.sf(t, n - 2)
    return r, np.minimum(p, 1.0)


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


def estimate_pairs(values: np.ndarray, pairs: list[tuple[int, int]], resampling: Resampling, rng: np.random.Generator,
                   clusters: np.ndarray | None = None) -> dict[tuple[int, int, str], Estimate]:
    """Both coefficients of each column pair of values [n, M] that are all finite, with bootstrap intervals
    (resampling whole clusters when given, see `bootstrap_weights`).

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
    weights = bootstrap_weights(n, resampling.resamples, rng, clusters)
    order = column_orders(values)
    index = np.asarray(usable, dtype=np.int64)
    for coefficient in COEFFICIENTS:
        r, p = coefficients(values, index, coefficient)
        replicates = weighted_correlations(values, order, weights, index, coefficient == SPEARMAN)
        for k, (i, j) in enumerate(usable):
            low, high = percentile_interval(replicates[:, k], resampling.confidence)
            estimates[i, j, coefficient] = Estimate(n, float(r[k]), float(p[k]), low, high,
                                                    replicates=replicates[:, k])
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
                            permutations: int, rng: np.random.Generator,
                            clusters: np.ndarray | None = None) -> np.ndarray:
    """Spearman ρ(first) − ρ(second) of each column pair under random relabellings of the pooled rows [P, K]
    (of whole clusters when given: labels of first's rows, then second's)."""
    pooled = np.concatenate([first, second])
    membership = permutation_weights(len(first), len(pooled), permutations, rng, clusters)
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
