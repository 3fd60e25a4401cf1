"""Operation counts and the energy model (latency/opcount.py) against slow references and hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsity_latency.latency.opcount import (
    EnergyModel,
    conv_output_size,
    dense_macs,
    fan_out,
    membrane_traffic_bits,
    synops,
)


def slow_conv_fan_out(layer: nn.Conv2d, channels: int, height: int, width: int) -> torch.Tensor:
    """For every input unit, how many (output channel, output position) pairs read it.

    Walks every output position and every kernel tap; the tap reads input row oy·s − p + ky·d
    (columns likewise) when that lies on the input, i.e. not in the zero padding.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    in_per_group = channels // layer.groups
    out_per_group = layer.out_channels // layer.groups
    fan = torch.zeros(channels, height, width, dtype=torch.float64)
    for out_channel in range(layer.out_channels):
        group = out_channel // out_per_group
        group_channels = range(group * in_per_group, (group + 1) * in_per_group)
        for oy in range(out_h):
            for ox in range(out_w):
                for ky in range(kh):
                    for kx in range(kw):
                        iy = oy * sh - ph + ky * dh
                        ix = ox * sw - pw + kx * dw
                        if 0 <= iy < height and 0 <= ix < width:
                            for c in group_channels:
                                fan[c, iy, ix] += 1
    return fan


CONV_CASES = [
    # (in, out, kernel, stride, padding, dilation, groups, height, width)
    pytest.param(2, 3, 3, 1, 1, 1, 1, 6, 6, id="k3s1p1"),
    pytest.param(2, 3, 3, 2, 1, 1, 1, 7, 7, id="k3s2p1-odd"),
    pytest.param(2, 3, 3, 2, 1, 1, 1, 8, 8, id="k3s2p1-even"),
    pytest.param(1, 4, 2, 2, 0, 1, 1, 6, 6, id="k2s2p0"),
    pytest.param(2, 3, 3, 2, 0, 1, 1, 7, 7, id="k3s2p0-odd"),
    pytest.param(2, 3, 3, 2, 0, 1, 1, 8, 8, id="k3s2p0-even-last-unread"),
    pytest.param(2, 3, 3, 2, 1, 1, 1, 8, 7, id="k3s2p1-non-square"),
    pytest.param(1, 2, 3, 1, 2, 2, 1, 7, 7, id="k3s1p2-dilation2"),
    pytest.param(4, 6, 3, 1, 1, 1, 2, 5, 5, id="k3s1p1-groups2"),
]


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "dilation", "groups", "height", "width"), CONV_CASES
)
def test_conv_fan_out_matches_slow_reference(
    c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, groups: int, height: int,
    width: int,
) -> None:
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    fan = fan_out(layer, (c_in, height, width))
    assert fan.shape == (c_in, height, width)
    torch.testing.assert_close(fan.double(), slow_conv_fan_out(layer, c_in, height, width))
    # conv_output_size agrees with what the layer really produces
    out = layer(torch.zeros(1, c_in, height, width))
    assert conv_output_size(layer, height, width) == tuple(out.shape[-2:])


def test_conv_fan_out_even_size_last_row_and_column_unread() -> None:
    # 8×8, k3 s2 p0: output (8 − 3)//2 + 1 = 3; taps reach rows 0..2·2 + 2 = 6, so row/column 7 reach nothing
    layer = nn.Conv2d(1, 5, 3, stride=2)
    fan = fan_out(layer, (1, 8, 8))
    assert fan[0, 7, :].eq(0).all()
    assert fan[0, :, 7].eq(0).all()
    # row 2 is read by output rows 0 (tap 2) and 1 (tap 0); same for column 2 → 2·2 positions × 5 channels
    assert fan[0, 2, 2] == 20
    # (0, 0) is read only by output (0, 0) → 1 × 5 channels
    assert fan[0, 0, 0] == 5


def test_conv_fan_out_of_the_34x34_stride2_layer() -> None:
    # Conv2d(2, 8, 3, stride 2, padding 1) on 34×34 → 17×17 outputs. Per axis the 17 outputs read 17·3 = 51 taps,
    # of which only output 0's first tap falls in the padding (output 16 reads padded 32..34 = input 31..33), so
    # 50 real taps per axis: total fan-out 50·50 · 8 channels · 2 input channels = 40000, and input row 33 is
    # read by output row 16 (tap 2): 8 channels × (1 row × 1 column) at the corner (33, 33) = 8.
    fan = fan_out(nn.Conv2d(2, 8, 3, stride=2, padding=1), (2, 34, 34))
    assert fan.sum() == 40000
    assert fan[0, 33, 33] == 8


def test_conv_fan_out_hand_values_same_padding() -> None:
    # 5×5, Conv2d(1, 4, 3, padding=1): an interior input feeds 3×3 outputs, an edge one 2×3, a corner 2×2
    fan = fan_out(nn.Conv2d(1, 4, 3, padding=1), (1, 5, 5))
    assert fan[0, 2, 2] == 9 * 4  # 36
    assert fan[0, 0, 2] == 6 * 4  # 24
    assert fan[0, 0, 0] == 4 * 4  # 16
    assert fan[0, 4, 4] == 4 * 4  # 16
    # total: every one of the 5·5 outputs × 4 channels reads 9 taps, minus those in the padding.
    # Per axis the 5 outputs read 3+3+3+3+3 = 15 taps of which 2 are padding → 13; so 13·13·4 = 676
    assert fan.sum() == 676


@pytest.mark.parametrize(("y", "x", "expected"), [(2, 2, 36), (0, 0, 16), (4, 0, 16), (0, 3, 24)])
def test_synops_single_spike_hand_count(y: int, x: int, expected: float) -> None:
    layer = nn.Conv2d(1, 4, 3, padding=1)
    spikes = torch.zeros(1, 1, 1, 5, 5)  # [T, B, C, H, W]
    spikes[0, 0, 0, y, x] = 1.0
    # centre: 9 output positions × 4 channels = 36; corner: 4 × 4 = 16; edge: 6 × 4 = 24
    assert synops(spikes, fan_out(layer, (1, 5, 5))) == expected


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "dilation", "groups", "height", "width"),
    [CONV_CASES[1], CONV_CASES[5], CONV_CASES[8]],
)
def test_synops_random_spikes_match_slow_count(
    c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, groups: int, height: int,
    width: int,
) -> None:
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    generator = torch.Generator().manual_seed(1)
    spikes = (torch.rand(4, 3, c_in, height, width, generator=generator) < 0.3).float()  # [T, B, C, H, W]
    reference = slow_conv_fan_out(layer, c_in, height, width)
    # one accumulate per spike and per target it reaches
    expected = sum(float(reference[c, y, x]) for _, _, c, y, x in spikes.nonzero().tolist())
    assert synops(spikes, fan_out(layer, (c_in, height, width))) == expected


def test_synops_equals_dense_conv_of_spikes_with_unit_weights() -> None:
    # Second view of the same count: with all-ones weights and one output channel, Σ outputs = Σ spike × (taps
    # that read it); × out_channels gives SynOps.
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    generator = torch.Generator().manual_seed(2)
    spikes = (torch.rand(5, 2, 2, 9, 9, generator=generator) < 0.4).float()
    ones = torch.ones(1, 2, 3, 3)
    per_channel = torch.nn.functional.conv2d(spikes.flatten(0, 1), ones, stride=2, padding=1).sum()
    assert synops(spikes, fan_out(layer, (2, 9, 9))) == pytest.approx(3 * float(per_channel))


@pytest.mark.parametrize("k", [0, 1, 7, 100])
def test_linear_synops_is_spikes_times_out_features(k: int) -> None:
    layer = nn.Linear(100, 50)
    fan = fan_out(layer, (100,))
    assert fan.shape == (100,)
    assert fan.eq(50).all()
    spikes = torch.zeros(3, 2, 100)  # [T, B, in]
    positions = torch.randperm(600, generator=torch.Generator().manual_seed(k))[:k]
    spikes.view(-1)[positions] = 1.0
    # k spikes, each reaching all 50 outputs → k·50
    assert synops(spikes, fan) == k * 50


def test_synops_without_leading_axes() -> None:
    # a single [in] spike vector: 4 spikes × 10 outputs = 40
    spikes = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert synops(spikes, fan_out(nn.Linear(6, 10), (6,))) == 40


def test_dense_macs_hand_values() -> None:
    conv = nn.Conv2d(2, 8, 3, stride=2, padding=1)
    # (34 + 2·1 − 3)//2 + 1 = 17 → 3·3 · 2 · 8 · 17·17 = 144 · 289 = 41616
    assert conv_output_size(conv, 34, 34) == (17, 17)
    assert dense_macs(conv, (2, 34, 34)) == 41616
    # in·out = 1296·10
    assert dense_macs(nn.Linear(1296, 10), (1296,)) == 12960
    # grouped: each output channel sees in/groups = 2 channels: 3·3 · 2 · 6 · 5·5 = 2700
    assert dense_macs(nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 5, 5)) == 2700


def test_unknown_layer_is_rejected() -> None:
    with pytest.raises(TypeError):
        fan_out(nn.ReLU(), (4,))
    with pytest.raises(TypeError):
        dense_macs(nn.ReLU(), (4,))


def test_membrane_traffic_bits() -> None:
    # read + write: 100 neurons · 6 steps · 1.58 bits · 2 = 1896
    assert membrane_traffic_bits(100, 6, 1.58) == pytest.approx(100 * 6 * 1.58 * 2)
    assert membrane_traffic_bits(100, 6, 1.58) == pytest.approx(1896.0)


def test_energy_model() -> None:
    # 10 AC · 0.9 + 2 MAC · 4.6 + 64 bits · 0.15625 = 9 + 9.2 + 10 = 28.2 pJ
    assert EnergyModel().energy_pj(synops=10, macs=2, traffic_bits=64) == pytest.approx(28.2)
    assert EnergyModel().energy_pj() == 0.0
    custom = EnergyModel(ac_pj=1.0, mac_pj=2.0, memory_pj_per_bit=0.5)
    # 3·1 + 4·2 + 8·0.5 = 15
    assert custom.energy_pj(synops=3, macs=4, traffic_bits=8) == pytest.approx(15.0)
