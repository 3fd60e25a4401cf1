"""Correlation statistics against hand-computed values, scipy, and the obvious slow resampling loops."""

import math

import numpy as np
import pytest
from scipy import stats

from sparsity_latency.statistics import (
    EXACT_SPEARMAN_MAX_N,
    PEARSON,
    SPEARMAN,
    Resampling,
    benjamini_hochberg,
    bootstrap_weights,
    coefficients,
    column_orders,
    estimate_pairs,
    exact_spearman_p,
    fisher_z_test,
    permutation_differences,
    permutation_p,
    permutation_weights,
    weighted_correlations,
)

# x with ties, y with ties: the kernel's weighted mid-ranks must handle both.
X = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 8.0, 9.0, 4.0])
Y = np.array([2.0, 1.0, 3.0, 3.0, 6.0, 4.0, 7.0, 7.0, 9.0, 2.5])


def _scipy(x: np.ndarray, y: np.ndarray, coefficient: str) -> float:
    return float((stats.spearmanr if coefficient == SPEARMAN else stats.pearsonr)(x, y).statistic)


def test_spearman_and_pearson_by_hand() -> None:
    # x = 1..4, y = 2, 4, 5, 4.5: ranks of y are 1, 2, 4, 3 → d = 0, 0, 1, 1 → ρ = 1 − 6·2/(4·15) = 0.8.
    # Pearson: x̄ = 2.5, ȳ = 3.875; Σdxdy = 4.25, Σdx² = 5, Σdy² = 5.1875 → r = 4.25/√(5·5.1875).
    values = np.array([[1, 2], [2, 4], [3, 5], [4, 4.5]], dtype=float)
    found = estimate_pairs(values, [(0, 1)], Resampling(resamples=50), np.random.default_rng(0))
    assert found[0, 1, SPEARMAN].r == pytest.approx(0.8)
    pearson = found[0, 1, PEARSON]
    assert pearson.r == pytest.approx(4.25 / math.sqrt(5 * 5.1875))
    assert pearson.p == pytest.approx(1 - pearson.r)  # n = 4: Pearson's p has the closed form 1 − |r|
    assert pearson.n == 4 and pearson.note == ""


@pytest.mark.parametrize("coefficient", [SPEARMAN, PEARSON])
def test_weighted_kernel_equals_scipy_on_the_sample_the_weights_stand_for(coefficient: str) -> None:
    values = np.column_stack([X, Y])
    rng = np.random.default_rng(3)
    counts = bootstrap_weights(len(X), 20, rng)
    subsets = permutation_weights(6, len(X), 20, rng)
    for weights in (counts, subsets, np.ones((1, len(X)))):
        found = weighted_correlations(values, column_orders(values), weights, np.array([[0, 1]]),
                                      coefficient == SPEARMAN)
        for b, w in enumerate(weights):
            drawn = np.repeat(np.arange(len(X)), w.astype(int))
            expected = _scipy(X[drawn], Y[drawn], coefficient) if np.ptp(X[drawn]) and np.ptp(Y[drawn]) else np.nan
            assert found[b, 0] == pytest.approx(expected, nan_ok=True)


def test_bootstrap_interval_equals_the_slow_loop() -> None:
    values = np.column_stack([X, Y, -X ** 2])
    resampling = Resampling(resamples=300, seed=7)
    found = estimate_pairs(values, [(0, 1), (0, 2)], resampling, np.random.default_rng(11))
    weights = bootstrap_weights(len(X), 300, np.random.default_rng(11))  # the same draw, replayed
    for column in (1, 2):
        for coefficient in (SPEARMAN, PEARSON):
            replicates = []
            for w in weights:
                drawn = np.repeat(np.arange(len(X)), w.astype(int))
                x, y = values[drawn, 0], values[drawn, column]
                replicates.append(_scipy(x, y, coefficient) if np.ptp(x) and np.ptp(y) else np.nan)
            low, high = np.nanpercentile(replicates, [2.5, 97.5])
            estimate = found[0, column, coefficient]
            assert (estimate.ci_low, estimate.ci_high) == (pytest.approx(low), pytest.approx(high))
            assert estimate.ci_low <= estimate.r <= estimate.ci_high
            assert (estimate.r, estimate.p) == pytest.approx(
                (_scipy(values[:, 0], values[:, column], coefficient),
                 (stats.spearmanr if coefficient == SPEARMAN else stats.pearsonr)(
                     values[:, 0], values[:, column]).pvalue))


def test_known_correlation_structure() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = 0.6 * x + 0.8 * rng.normal(size=400)  # population r = 0.6
    found = estimate_pairs(np.column_stack([x, y]), [(0, 1)], Resampling(resamples=500), rng)
    pearson = found[0, 1, PEARSON]
    assert pearson.ci_low < 0.6 < pearson.ci_high
    assert pearson.ci_high - pearson.ci_low < 0.2
    assert pearson.p < 1e-20


@pytest.mark.parametrize(("values", "note"), [
    (np.array([[1.0, 2.0], [2.0, 3.0]]), "n = 2 < 3"),
    (np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]]), "x constant"),
    (np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]), "y constant"),
    (np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]), "x and y constant"),
])
def test_degenerate_pairs_give_nan_and_a_note(values: np.ndarray, note: str) -> None:
    found = estimate_pairs(values, [(0, 1)], Resampling(resamples=10), np.random.default_rng(0))
    for coefficient in (SPEARMAN, PEARSON):
        estimate = found[0, 1, coefficient]
        assert estimate.note == note and estimate.n == len(values)
        assert all(math.isnan(v) for v in (estimate.r, estimate.p, estimate.ci_low, estimate.ci_high))


def test_fisher_z_by_hand() -> None:
    # atanh 0.5 = 0.549306, atanh 0.1 = 0.100335; se = √(1/25 + 1/25) = 0.282843; z = 1.58735 → p = 0.11243
    p, note = fisher_z_test(0.5, 28, 0.1, 28)
    assert p == pytest.approx(0.11243, abs=2e-5) and note == ""
    assert fisher_z_test(0.3, 28, 0.3, 40)[0] == pytest.approx(1.0)
    p, note = fisher_z_test(0.5, 3, 0.1, 28)
    assert math.isnan(p) and "n ≥ 4" in note


def test_permutation_null_equals_the_slow_loop_and_separates_groups() -> None:
    first = np.column_stack([np.arange(8.0), np.arange(8.0)])  # ρ = +1
    second = np.column_stack([np.arange(8.0), -np.arange(8.0)])  # ρ = −1
    null = permutation_differences(first, second, [(0, 1)], 200, np.random.default_rng(5))
    membership = permutation_weights(8, 16, 200, np.random.default_rng(5)).astype(bool)
    pooled = np.concatenate([first, second])
    for p, chosen in enumerate(membership):
        a, b = pooled[chosen], pooled[~chosen]
        assert null[p, 0] == pytest.approx(_scipy(a[:, 0], a[:, 1], SPEARMAN) - _scipy(b[:, 0], b[:, 1], SPEARMAN))
    assert permutation_p(2.0, null[:, 0]) < 0.02
    same = permutation_differences(first, first.copy(), [(0, 1)], 200, np.random.default_rng(5))
    assert permutation_p(0.0, same[:, 0]) == 1.0


def test_permutation_p_counts_the_observed_labelling() -> None:
    null = np.array([0.1, -0.5, 0.3, np.nan, 0.2])
    assert permutation_p(0.25, null) == pytest.approx((1 + 2) / (1 + 4))  # |−0.5| and |0.3| ≥ 0.25


def test_benjamini_hochberg_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04, 0.20 (m = 4): p·m/k = 0.04, 0.06, 0.0533, 0.20 → running minimum from the top.
    adjusted = benjamini_hochberg(np.array([0.01, 0.04, np.nan, 0.03, 0.20]))
    assert adjusted[[0, 1, 3, 4]] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert math.isnan(adjusted[2])


def test_resamples_and_relabellings_are_what_they_stand_for() -> None:
    counts = bootstrap_weights(7, 4000, np.random.default_rng(1))
    assert (counts.sum(axis=1) == 7).all() and counts.min() >= 0
    assert counts.mean(axis=0) == pytest.approx(np.ones(7), abs=0.05)  # each observation drawn once on average
    assert counts.var(axis=0) == pytest.approx(np.full(7, 6 / 7), abs=0.08)  # binomial(7, 1/7): n·p·(1 − p)
    members = permutation_weights(3, 8, 4000, np.random.default_rng(2))
    assert set(np.unique(members)) == {0.0, 1.0} and (members.sum(axis=1) == 3).all()
    assert members.mean(axis=0) == pytest.approx(np.full(8, 3 / 8), abs=0.03)
    again = bootstrap_weights(7, 4000, np.random.default_rng(1))
    assert (again == counts).all()


def test_resampling_draws_are_seeded_per_label() -> None:
    a, b = Resampling(seed=1), Resampling(seed=2)
    assert a.rng("x").random() == Resampling(seed=1).rng("x").random()
    assert a.rng("x").random() != a.rng("y").random()
    assert a.rng("x").random() != b.rng("x").random()


def test_small_samples_get_the_exact_spearman_p() -> None:
    # n = 3, ρ = 1: of the 3! = 6 orderings, the identity and the reversal are as extreme → p = 1/3, where the
    # t approximation says 0.
    found = estimate_pairs(np.array([[1.0, 3.0], [2.0, 5.0], [3.0, 9.0]]), [(0, 1)], Resampling(resamples=10),
                           np.random.default_rng(0))
    assert found[0, 1, SPEARMAN].p == pytest.approx(1 / 3) and found[0, 1, SPEARMAN].r == pytest.approx(1.0)
    x, y = np.array([1.0, 1.0, 3.0, 4.0, 5.0, 2.0, 7.0]), np.array([2.0, 1.0, 4.0, 4.0, 6.0, 5.0, 3.0])  # ties
    exact = stats.permutation_test((y,), lambda v: abs(stats.spearmanr(x, v).statistic), alternative="greater",
                                   permutation_type="pairings", n_resamples=np.inf)  # p = share with |ρ*| ≥ |ρ|
    assert exact_spearman_p(x, y) == pytest.approx(exact.pvalue)


@pytest.mark.parametrize("n", [3, 5, 8, 9, 30])
def test_all_pairs_at_once_equal_scipy_pair_by_pair(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.column_stack([rng.normal(size=n), rng.integers(0, 4, size=n), rng.normal(size=n) ** 3])
    pairs = np.array([(0, 1), (0, 2), (1, 2)])
    for coefficient, test in ((PEARSON, stats.pearsonr), (SPEARMAN, stats.spearmanr)):
        r, p = coefficients(values, pairs, coefficient)
        for k, (i, j) in enumerate(pairs):
            expected = test(values[:, i], values[:, j])
            assert r[k] == pytest.approx(expected.statistic)
            exact = coefficient == SPEARMAN and n <= EXACT_SPEARMAN_MAX_N
            assert p[k] == pytest.approx(exact_spearman_p(values[:, i], values[:, j]) if exact else expected.pvalue)


def test_cluster_resamples_and_relabellings_move_whole_runs() -> None:
    clusters = np.array(["a", "a", "b", "c", "c", "c", "d"])
    counts = bootstrap_weights(len(clusters), 500, np.random.default_rng(4), clusters)
    for label in "abcd":
        rows = counts[:, clusters == label]
        assert (rows == rows[:, :1]).all()  # every point of a run is drawn as often as its run
    per_run = counts[:, [0, 2, 3, 6]]
    assert (per_run.sum(axis=1) == 4).all()  # four runs drawn per resample
    members = permutation_weights(3, len(clusters), 500, np.random.default_rng(5), clusters)  # first group: a, b
    for label in "abcd":
        rows = members[:, clusters == label]
        assert (rows == rows[:, :1]).all()
    assert (members[:, [0, 2, 3, 6]].sum(axis=1) == 2).all()  # two runs in the first group, as in the data
