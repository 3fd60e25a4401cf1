"""Gradient-masking checks on hand-built robust accuracies."""

from __future__ import annotations

from sparsity_latency.masking import describe_check, masking_checks


def _sound() -> dict[tuple[str, str, float], float]:
    """Accuracies of an attack that behaves: falls with eps, more steps and restarts, to 0 at eps 1."""
    return {
        ("pgd", "main", 0.0): 0.80, ("pgd", "main", 0.03): 0.40, ("pgd", "main", 0.1): 0.10,
        ("pgd", "more-steps", 0.03): 0.38, ("pgd", "more-restarts", 0.03): 0.40,
        ("rga", "main", 0.03): 0.39, ("fgsm", "main", 0.03): 0.50,
        ("pgd", "chance", 1.0): 0.0,
    }


def _run(accuracies: dict, tolerance: float = 0.02, n_samples: int = 1000):
    return masking_checks(accuracies, 0.80, 10, ("rga",), 1.0, tolerance, n_samples)


def test_a_sound_evaluation_passes_every_check() -> None:
    checks = _run(_sound())
    assert all(c.passed for c in checks)
    assert sorted((c.check, c.eps) for c in checks) == sorted([
        ("more-steps", 0.03), ("more-restarts", 0.03), ("adaptive", 0.03),
        ("eps-monotone", 0.03), ("eps-monotone", 0.1), ("chance", 1.0),
        *[("below-clean", eps) for eps in (0.0, 0.03, 0.1, 0.03, 0.03)],  # pgd ×3, rga, fgsm
    ])


def _failed(accuracies: dict, **kwargs) -> list[tuple[str, float, float, float]]:
    return [(c.check, c.eps, c.accuracy, c.bound) for c in _run(accuracies, **kwargs) if not c.passed]


def test_each_sign_of_masking_fails_its_check() -> None:
    assert _failed({**_sound(), ("pgd", "more-steps", 0.03): 0.45}) == [("more-steps", 0.03, 0.45, 0.40)]
    assert _failed({**_sound(), ("pgd", "more-restarts", 0.03): 0.43}) == [("more-restarts", 0.03, 0.43, 0.40)]
    assert _failed({**_sound(), ("rga", "main", 0.03): 0.20}) == [("adaptive", 0.03, 0.40, 0.20)]
    assert _failed({**_sound(), ("pgd", "main", 0.1): 0.5}) == [("eps-monotone", 0.1, 0.5, 0.4)]
    assert _failed({**_sound(), ("pgd", "chance", 1.0): 0.35}) == [("chance", 1.0, 0.35, 0.1)]
    assert _failed({**_sound(), ("fgsm", "main", 0.03): 0.9}) == [("below-clean", 0.03, 0.9, 0.8)]


def test_tolerance_is_the_larger_of_the_setting_and_one_sample() -> None:
    slightly_up = {**_sound(), ("pgd", "more-steps", 0.03): 0.415}
    assert _failed(slightly_up) == []  # 0.015 above, within 0.02
    assert _failed(slightly_up, tolerance=0.01) == [("more-steps", 0.03, 0.415, 0.40)]
    assert _failed(slightly_up, tolerance=0.01, n_samples=50) == []  # one sample is 0.02 of 50


def test_missing_evaluations_are_skipped_and_failures_read_as_one_line() -> None:
    only_pgd = {("pgd", "main", 0.03): 0.4}
    assert [c.check for c in _run(only_pgd)] == ["below-clean"]
    row = {"check": "adaptive", "attack": "pgd", "variant": "main", "eps": 0.03, "robust_accuracy": 0.4,
           "check_bound_accuracy": 0.2, "check_reference": "rga"}
    assert describe_check(row) == "adaptive: pgd (main) at eps 0.03 has accuracy 0.400, above 0.200 of rga"


def test_one_sample_more_never_fails_even_where_floating_point_rounds_up() -> None:
    """(k + 1)/n > k/n + 1/n in floating point for n = 24, k = 4 (and k = 13, 16, 19, 22)."""
    for k in (4, 13, 16, 19, 22):
        accuracies = {**_sound(), ("pgd", "main", 0.03): k / 24, ("pgd", "more-steps", 0.03): (k + 1) / 24,
                      ("pgd", "more-restarts", 0.03): k / 24, ("rga", "main", 0.03): 1.0,
                      ("pgd", "main", 0.1): k / 24}
        assert ("more-steps", 0.03) not in [(c[0], c[1]) for c in _failed(accuracies, n_samples=24)]
    assert (5 / 24) > (4 / 24) + (1 / 24)  # the rounding this guards against
