"""Weight quantization (models/quantized.py): ternary, SAWB and uniform rules by hand, straight-through
gradients, and the quantized conv / linear layers against their plain counterparts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.models.quantized import (
    QuantConv2d,
    QuantLinear,
    check_weight_bits,
    quantize_weights,
    sawb_alpha,
    sawb_weights,
    ternary_weights,
    uniform_weights,
)

# The ternary example: th = 0.05·max|w| = 0.05·0.5 = 0.025; |w| ≥ 0.025 for 0.5, 0.3, −0.4 only,
# so m = (0.5 + 0.3 + 0.4)/3 = 0.4 and q = [0.4, 0, 0.4, −0.4, 0, 0].
TERNARY_W = [0.5, -0.02, 0.3, -0.4, 0.01, 0.0]
TERNARY_Q = [0.4, 0.0, 0.4, -0.4, 0.0, 0.0]


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- rules by hand


def test_ternary_by_hand() -> None:
    torch.testing.assert_close(ternary_weights(torch.tensor(TERNARY_W)), torch.tensor(TERNARY_Q))


def test_ternary_threshold_is_inclusive_on_both_sides() -> None:
    # max|w| = 1 → th = 0.05; ±0.05 reach it, ±0.04 do not; m = (1 + 0.05 + 0.05 + 1)/4 = 0.525
    w = torch.tensor([1.0, 0.05, -0.05, 0.04, -0.04, -1.0])
    torch.testing.assert_close(ternary_weights(w), torch.tensor([0.525, 0.525, -0.525, 0.0, 0.0, -0.525]))


def test_sawb_4bit_by_hand() -> None:
    w = torch.tensor([0.5, -0.5, 0.6, -0.6, 0.75, -0.75, 1.0, -1.0])
    # mean(w) = 0; Σw² = 2·(0.25 + 0.36 + 0.5625 + 1) = 4.345; std = sqrt(4.345/7) = 0.787854 (unbiased)
    # mean|w| = 5.7/8 = 0.7125
    # α = std/0.077 − (1.013/0.077)·mean|w| = 10.231873 − 9.373539 = 0.858334 (> 0, and < max|w| = 1)
    alpha = 0.858334
    torch.testing.assert_close(sawb_alpha(w, 4), torch.tensor(alpha), atol=1e-5, rtol=0)
    # n = 2³ − 1 = 7, s = 7/α = 8.15533: 0.5·s = 4.08 → 4; 0.6·s = 4.89 → 5; 0.75·s = 6.12 → 6;
    # 1.0 is clamped to α first → 7. q = k·α/7.
    expected = torch.tensor([4.0, -4.0, 5.0, -5.0, 6.0, -6.0, 7.0, -7.0]) * alpha / 7
    torch.testing.assert_close(sawb_weights(w, 4), expected, atol=1e-5, rtol=0)


def test_sawb_falls_back_to_max_when_alpha_is_not_positive() -> None:
    w = torch.tensor([1.0, 1.0, 1.0, 0.3])
    # mean = 0.825; Σ(w − mean)² = 3·0.175² + 0.525² = 0.3675; std = sqrt(0.3675/3) = 0.35
    # α = 0.35/0.077 − (1.013/0.077)·0.825 = 4.545 − 10.853 < 0 → α = max|w| = 1
    torch.testing.assert_close(sawb_alpha(w, 4), torch.tensor(1.0))
    # s = 7: 1 → 7 → 1; 0.3·7 = 2.1 → 2 → 2/7
    torch.testing.assert_close(sawb_weights(w, 4), torch.tensor([1.0, 1.0, 1.0, 2 / 7]))


def test_uniform_3bit_by_hand() -> None:
    w = torch.tensor([0.9, -0.5, 0.2, -0.1, 0.65, 0.0])
    # α = max|w| = 0.9, n = 2² − 1 = 3, s = 3/0.9 = 3.333: w·s = [3, −1.67, 0.67, −0.33, 2.17, 0]
    # → round [3, −2, 1, 0, 2, 0] → /s: [0.9, −0.6, 0.3, 0, 0.6, 0]
    torch.testing.assert_close(uniform_weights(w, 3), torch.tensor([0.9, -0.6, 0.3, 0.0, 0.6, 0.0]))


def test_uniform_2bit_levels_are_minus_alpha_zero_alpha() -> None:
    # n = 2¹ − 1 = 1, α = 0.8, s = 1.25: [0.8, 0.3, −0.5, −0.8]·s = [1, 0.375, −0.625, −1] → [1, 0, −1, −1]
    w = torch.tensor([0.8, 0.3, -0.5, -0.8])
    torch.testing.assert_close(uniform_weights(w, 2), torch.tensor([0.8, 0.0, -0.8, -0.8]))


@pytest.mark.parametrize("rule", ["sawb", "uniform"])
def test_8bit_is_close_to_the_input(rule: str) -> None:
    w = _randn(1000)
    alpha = sawb_alpha(w, 8) if rule == "sawb" else w.abs().max()
    inside = w.abs() <= alpha
    # Inside ±α rounding moves a weight by at most half a step, α/(2·127).
    error = (quantize_weights(w, 8, rule) - w)[inside].abs().max()
    assert error <= alpha / 254 + 1e-6
    assert inside.float().mean() > 0.99


def test_all_zero_weights_stay_zero() -> None:
    zeros = torch.zeros(3, 4)
    for bits, rule in [(2, "sawb"), (4, "sawb"), (8, "sawb"), (3, "uniform")]:
        assert torch.equal(quantize_weights(zeros, bits, rule), zeros)


# ---------------------------------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    ("bits", "rule"),
    [(2, "sawb"), (2, "uniform"), (3, "uniform"), (4, "uniform"), (4, "sawb"), (5, "uniform"), (8, "sawb"),
     (8, "uniform")],
)
def test_number_of_distinct_values(bits: int, rule: str) -> None:
    # ternary: at most {−m, 0, m}; k-bit: at most 2n + 1 = 2^k − 1 values
    q = quantize_weights(_randn(64, 32, 3, 3), bits, rule)
    assert q.unique().numel() <= (3 if bits == 2 else 2**bits - 1)


@pytest.mark.parametrize(("bits", "rule"), [(2, "sawb"), (3, "uniform"), (4, "sawb"), (8, "uniform"), (32, "sawb")])
def test_gradient_is_straight_through(bits: int, rule: str) -> None:
    w = _randn(5, 7).requires_grad_()
    quantize_weights(w, bits, rule).sum().backward()
    assert torch.equal(w.grad, torch.ones(5, 7))
    # any upstream gradient passes unchanged, also for weights clamped to ±α
    upstream = _randn(5, 7, seed=1)
    w.grad = None
    (quantize_weights(w, bits, rule) * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)


def test_full_precision_returns_the_weight_itself() -> None:
    w = _randn(4, 4)
    assert quantize_weights(w, 32, "sawb") is w
    assert quantize_weights(w, 64.0, "uniform") is w


def test_float_bits_that_are_whole_numbers_work() -> None:
    w = _randn(50)
    assert torch.equal(quantize_weights(w, 4.0, "sawb"), quantize_weights(w, 4, "sawb"))
    assert torch.equal(quantize_weights(w, 2.0, "uniform"), ternary_weights(w))


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("bits", "rule", "message"),
    [
        (3, "sawb", "4 or 8"),
        (6, "sawb", "4 or 8"),
        (4.5, "sawb", "4 or 8"),
        (1, "uniform", "at least 2"),
        (1.58, "sawb", "at least 2"),
        (2.5, "uniform", "whole number"),
        (16, "uniform", "from 2 to 8"),
        (4, "lsq", "unknown weight rule"),
        (32, "lsq", "unknown weight rule"),
    ],
)
def test_unsupported_combinations(bits: float, rule: str, message: str) -> None:
    error = check_weight_bits(bits, rule)
    assert error is not None and message in error
    with pytest.raises(ValueError, match=message):
        quantize_weights(torch.ones(3), bits, rule)
    with pytest.raises(ValueError, match=message):
        QuantLinear(3, 2, weight_bits=bits, weight_rule=rule)


@pytest.mark.parametrize(("bits", "rule"), [(32, "sawb"), (2, "sawb"), (2, "uniform"), (4, "sawb"), (7, "uniform")])
def test_supported_combinations(bits: float, rule: str) -> None:
    assert check_weight_bits(bits, rule) is None


def test_rule_functions_check_their_own_bits() -> None:
    with pytest.raises(ValueError, match="4 or 8"):
        sawb_weights(torch.ones(3), 2)
    with pytest.raises(ValueError, match="from 2 to 8"):
        uniform_weights(torch.ones(3), 9)


# ---------------------------------------------------------------------------------------------- layers


def test_full_precision_layers_equal_the_plain_ones_exactly() -> None:
    x_image, x_vector = _randn(2, 3, 8, 8), _randn(4, 10)
    plain_conv, plain_linear = nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.Linear(10, 6)
    conv, linear = QuantConv2d(3, 5, 3, stride=2, padding=1), QuantLinear(10, 6)
    conv.load_state_dict(plain_conv.state_dict())
    linear.load_state_dict(plain_linear.state_dict())
    assert isinstance(conv, nn.Conv2d) and isinstance(linear, nn.Linear)
    assert torch.equal(conv(x_image), plain_conv(x_image))
    assert torch.equal(linear(x_vector), plain_linear(x_vector))


def test_ternary_conv_equals_conv_with_the_hand_ternarized_weight() -> None:
    conv = QuantConv2d(1, 2, (1, 3), bias=True, weight_bits=2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(TERNARY_W).reshape(2, 1, 1, 3))
        conv.bias.copy_(torch.tensor([0.1, -0.2]))
    hand = torch.tensor(TERNARY_Q).reshape(2, 1, 1, 3)
    x = _randn(2, 1, 4, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, hand, torch.tensor([0.1, -0.2])))
    torch.testing.assert_close(conv.quantized_weight(), hand)
    assert not conv.quantized_weight().requires_grad


def test_ternary_linear_equals_linear_with_the_hand_ternarized_weight() -> None:
    linear = QuantLinear(3, 2, weight_bits=2, weight_rule="uniform")
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(TERNARY_W).reshape(2, 3))
    hand = torch.tensor(TERNARY_Q).reshape(2, 3)
    x = _randn(4, 3)
    torch.testing.assert_close(linear(x), F.linear(x, hand, linear.bias))


def test_layer_gradient_reaches_the_full_precision_weight() -> None:
    linear = QuantLinear(3, 2, bias=False, weight_bits=4)
    x = _randn(5, 3)
    linear(x).sum().backward()
    # straight-through: d/dW of Σ x·Wᵀ is the column sums of x, the same for both output rows
    torch.testing.assert_close(linear.weight.grad, x.sum(0).expand(2, 3))


def test_extra_repr_shows_the_bits() -> None:
    assert "weight_bits=2, weights=ternary" in repr(QuantConv2d(1, 1, 3, weight_bits=2))
    assert "weight_bits=4, weights=sawb" in repr(QuantLinear(3, 2, weight_bits=4))
    assert "weight_bits=32" in repr(QuantLinear(3, 2))
