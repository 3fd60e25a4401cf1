"""Gradient-masking checks: signs that an attack was fooled by vanishing or misleading gradients.

When surrogate gradients vanish, plain PGD fails and a model looks robust when it is not (arXiv
2512.22522). Robust accuracy under a sound attack behaves in known ways (Carlini et al. 2019, "On
evaluating adversarial robustness"); each check below holds one accuracy against a bound, and fails
when the accuracy exceeds the bound by more than the tolerance: `attack.check_tolerance`, or one
sample's worth (1 / samples) where that is larger, so that one sample alone never fails a check:

| check           | accuracy                         | must not exceed                      |
|-----------------|----------------------------------|--------------------------------------|
| `more-steps`    | PGD with factor × the steps      | PGD at the same eps                  |
| `more-restarts` | PGD with several random restarts | PGD at the same eps                  |
| `adaptive`      | PGD                              | each adaptive attack at the same eps |
| `eps-monotone`  | PGD at the next larger eps       | PGD at the eps before it             |
| `chance`        | PGD at check_eps (near the whole input range) | chance, 1 / classes     |
| `below-clean`   | every attack at every budget     | clean accuracy                       |

A run that fails any check is flagged: the attack stage records the failures in run.json, and the
CLI shows them beside the robust accuracies.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

MAIN, MORE_STEPS, MORE_RESTARTS, CHANCE = "main", "more-steps", "more-restarts", "chance"
CHECKED_ATTACK = "pgd"  # the plain attack the checks hold to account
ADAPTIVE_ATTACK = "apgd-ce"  # evaluated for the `adaptive` check when no adaptive attack is listed
ROUNDING = 1e-9  # slack for accuracies that are equal fractions computed differently


@dataclass(frozen=True)
class Check:
    check: str
    attack: str  # the attack whose accuracy is checked
    variant: str  # its evaluation (main, more-steps, more-restarts, chance)
    eps: float
    accuracy: float
    bound: float  # the accuracy it must not exceed (by more than the tolerance)
    reference: str  # where the bound comes from
    passed: bool



def describe_check(row: Mapping) -> str:
    """One line for a check row of the attack table (columns check, attack, variant, eps, accuracies, reference)."""
    return (f"{row['check']}: {row['attack']} ({row['variant']}) at eps {row['eps']:g} has accuracy "
            f"{row['robust_accuracy']:.3f}, above {row['check_bound_accuracy']:.3f} of {row['check_reference']}")


def masking_checks(
    accuracies: Mapping[tuple[str, str, float], float],
    clean_accuracy: float,
    n_classes: int,
    adaptive: tuple[str, ...],
    check_eps: float,
    tolerance: float,
    n_samples: int,
) -> list[Check]:
    """All checks over `accuracies` keyed (attack, variant, eps); pairs that were not evaluated are skipped."""
    checks: list[Check] = []
    tolerance = max(tolerance, 1.0 / n_samples) + ROUNDING  # (k + 1)/n may exceed k/n + 1/n in floating point

    def hold(check: str, key: tuple[str, str, float], bound: float, reference: str) -> None:
        if key in accuracies:
            attack, variant, eps = key
            value = accuracies[key]
            checks.append(Check(check, attack, variant, eps, value, bound, reference, value <= bound + tolerance))

    pgd_eps = sorted(eps for attack, variant, eps in accuracies if (attack, variant) == (CHECKED_ATTACK, MAIN))
    for eps in pgd_eps:
        base = accuracies[CHECKED_ATTACK, MAIN, eps]
        hold(MORE_STEPS, (CHECKED_ATTACK, MORE_STEPS, eps), base, f"{CHECKED_ATTACK} at eps {eps:g}")
        hold(MORE_RESTARTS, (CHECKED_ATTACK, MORE_RESTARTS, eps), base, f"{CHECKED_ATTACK} at eps {eps:g}")
        for name in adaptive:
            if (name, MAIN, eps) in accuracies:
                hold("adaptive", (CHECKED_ATTACK, MAIN, eps), accuracies[name, MAIN, eps], name)
    for smaller, larger in itertools.pairwise(pgd_eps):
        hold("eps-monotone", (CHECKED_ATTACK, MAIN, larger), accuracies[CHECKED_ATTACK, MAIN, smaller],
             f"{CHECKED_ATTACK} at eps {smaller:g}")
    hold("chance", (CHECKED_ATTACK, CHANCE, check_eps), 1.0 / n_classes, f"chance (1/{n_classes})")
    for (attack, variant, eps) in sorted(accuracies):
        if variant == MAIN:
            hold("below-clean", (attack, variant, eps), clean_accuracy, "clean accuracy")
    return checks
