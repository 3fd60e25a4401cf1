"""Correlations against hand-computed values, and the pairing of adversarial with standard runs."""

import math

import numpy as np
import pandas as pd
import pytest

from sparsity_latency.analysis import X_MEASURES, Y_MEASURES, correlation, paired_differences


def test_spearman_and_pearson_by_hand() -> None:
    # x = 1..4, y = 2, 4, 5, 4.5: ranks of y are 1, 2, 4, 3 → d = 0, 0, 1, 1 → ρ = 1 − 6·2/(4·15) = 0.8.
    # Pearson: x̄ = 2.5, ȳ = 3.875; Σdxdy = 4.25, Σdx² = 5, Σdy² = 5.1875 → r = 4.25/√(5·5.1875).
    result = correlation([1, 2, 3, 4], [2, 4, 5, 4.5])
    assert result["n"] == 4
    assert result["spearman_r"] == pytest.approx(0.8)
    assert result["pearson_r"] == pytest.approx(4.25 / math.sqrt(5 * 5.1875))
    # Pearson p for n = 4 (2 degrees of freedom) has the closed form p = 1 − |r|.
    assert result["pearson_p"] == pytest.approx(1 - result["pearson_r"])


def test_perfect_monotone_and_reversed() -> None:
    assert correlation([1, 2, 3], [10, 20, 40])["spearman_r"] == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1])["pearson_r"] == pytest.approx(-1.0)


@pytest.mark.parametrize(("x", "y", "n"), [([1, 2], [3, 4], 2), ([1, 1, 1], [1, 2, 3], 3),
                                          ([1, 2, np.nan, 4], [1, 2, 3, np.nan], 2)])
def test_too_few_or_flat_observations_give_nan(x: list, y: list, n: int) -> None:
    result = correlation(x, y)
    assert result["n"] == n
    assert all(math.isnan(result[k]) for k in ("spearman_r", "spearman_p", "pearson_r", "pearson_p"))


def test_paired_differences_match_runs_sharing_everything_but_method() -> None:
    def run(method: str, key: str, value: float) -> dict:
        return {"method": method, "pair_key": key, **dict.fromkeys([*X_MEASURES, *Y_MEASURES], value)}

    summaries = pd.DataFrame([run("standard", "a", 1.0), run("pgd-at", "a", 4.0), run("standard", "b", 2.0),
                              run("pgd-at", "b", 7.0), run("pgd-at", "c", 100.0)])  # "c" has no partner
    groups = paired_differences(summaries)
    assert list(groups) == ["pgd-at − standard"]
    differences = groups["pgd-at − standard"]
    assert sorted(differences.index) == ["a", "b"]
    assert differences.loc["a", "synops"] == 3.0 and differences.loc["b", "input_grad_hoyer"] == 5.0
