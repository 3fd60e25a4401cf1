"""Operation counts and the energy model (latency/opcount.py) against slow references and hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.latency.opcount import (
    EnergyModel,
    conv_output_size,
    dense_macs,
    fan_out,
    gate_ops,
    gated_macs,
    gated_synops,
    membrane_traffic_bits,
    synops,
)
from sparsity_latency.latency.profile import operation_counts
from sparsity_latency.models import build_model
from sparsity_latency.probes import NET, SparsityProbe


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


def test_synops_count_nonzero_values_not_their_size() -> None:
    # average-pooled spikes: 0.25, 0.5 and 1.0 are three nonzero inputs, each reaching 3 outputs → 9
    pooled = torch.tensor([[[0.25, 0.0, 0.5, 1.0]]])  # [T, B, in]
    assert synops(pooled, fan_out(nn.Linear(4, 3), (4,))) == 9
    # conv after a pool, Conv2d(1, 2, 3, padding=1) on 5×5: centre value reaches 9·2 = 18 targets, corner 4·2 = 8
    inputs = torch.zeros(1, 1, 1, 5, 5)
    inputs[0, 0, 0, 2, 2] = 0.25
    inputs[0, 0, 0, 0, 0] = 0.75
    fan = fan_out(nn.Conv2d(1, 2, 3, padding=1), (1, 5, 5))
    assert synops(inputs, fan) == 26
    assert synops(inputs * 4, fan) == synops((inputs > 0).float(), fan) == 26


POOL_CASES = [
    # (kernel, stride, padding, height, width)
    pytest.param(2, 2, 0, 4, 4, id="k2s2-even"),
    pytest.param(2, 2, 0, 5, 5, id="k2s2-odd"),
    pytest.param(2, 2, 0, 5, 6, id="k2s2-non-square"),
    pytest.param(2, 1, 0, 4, 4, id="k2s1-overlapping"),
    pytest.param(3, 2, 1, 7, 7, id="k3s2p1"),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "height", "width"), POOL_CASES)
def test_avg_pool_fan_out_matches_slow_reference(kernel: int, stride: int, padding: int, height: int,
                                                 width: int) -> None:
    # a pool's windows are those of a one-channel convolution with the same geometry, in every channel apart
    pool = nn.AvgPool2d(kernel, stride, padding)
    fan = fan_out(pool, (3, height, width))
    windows = slow_conv_fan_out(nn.Conv2d(1, 1, kernel, stride, padding), 1, height, width)[0]
    torch.testing.assert_close(fan.double(), windows.expand(3, height, width))


def test_avg_pool_fan_out_hand_values() -> None:
    # 2×2 pool, stride 2: each input of a 4×4 plane is in exactly one window
    assert fan_out(nn.AvgPool2d(2), (2, 4, 4)).eq(1).all()
    # 5×5: two windows per axis cover rows/columns 0..3; row 4 and column 4 reach none → 2 channels · 16 = 32
    fan = fan_out(nn.AvgPool2d(2), (2, 5, 5))
    assert fan[:, 4, :].eq(0).all() and fan[:, :, 4].eq(0).all()
    assert fan.sum() == 32
    # 2×2 windows at stride 1 on 4×4: an interior input is in 2·2 = 4 windows, an edge one in 2, a corner in 1
    fan = fan_out(nn.AvgPool2d(2, stride=1), (1, 4, 4))
    assert (fan[0, 1, 1], fan[0, 0, 1], fan[0, 0, 0]) == (4, 2, 1)


def test_avg_pool_synops_closed_form() -> None:
    pool = nn.AvgPool2d(2)
    inputs = torch.zeros(2, 1, 1, 5, 5)  # [T, B, C, H, W]
    # t = 0: nonzeros at (0, 0) and (3, 3) reach one window each; (4, 4) and (2, 4) reach none → 2
    for y, x in ((0, 0), (3, 3), (4, 4), (2, 4)):
        inputs[0, 0, 0, y, x] = 0.5
    # t = 1: all 25 nonzero, the 16 in rows/columns 0..3 reach one window → 16
    inputs[1] = 0.25
    assert synops(inputs, fan_out(pool, (1, 5, 5))) == 2 + 16


def test_avg_pool_with_ceil_mode_is_rejected() -> None:
    with pytest.raises(TypeError):
        fan_out(nn.AvgPool2d(2, ceil_mode=True), (1, 5, 5))


def test_gated_synops_hand_count() -> None:
    # Conv2d(2, 3, 3, padding=1) on 5×5: per output channel, a centre input reaches 9 targets, a corner 4, an edge 6
    layer = nn.Conv2d(2, 3, 3, padding=1)
    fan = fan_out(layer, (2, 5, 5))
    inputs = torch.zeros(2, 2, 5, 5)  # N = 2 frames
    inputs[0, 0, 2, 2] = 1.0  # 9
    inputs[0, 1, 0, 0] = 1.0  # 4
    inputs[1, 1, 0, 2] = 1.0  # 6
    inputs[1, 0, 4, 4] = 0.5  # 4 (nonzero, not binary)
    open_channels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # frame 0: (9 + 4) per open channel × 2 open = 26; frame 1: (6 + 4) × 1 open = 10
    assert gated_synops(inputs, fan, open_channels) == 36
    # all channels open is the ungated count: (13 + 10) · 3 = 69
    assert gated_synops(inputs, fan, torch.ones(2, 3)) == synops(inputs, fan) == 69


@pytest.mark.parametrize("groups", [1, 2])
def test_gated_synops_matches_per_channel_reference(groups: int) -> None:
    # Reference: convolving the nonzero pattern with all-ones kernels (of the same groups) counts, for each frame and
    # output channel, the accumulates that channel receives; sum them over the open channels only.
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups)
    generator = torch.Generator().manual_seed(3)
    inputs = (torch.rand(5, 4, 7, 7, generator=generator) < 0.3) * torch.rand(5, 4, 7, 7, generator=generator)
    open_channels = (torch.rand(5, 6, generator=generator) < 0.5).float()
    ones = torch.ones(6, 4 // groups, 3, 3)
    per_channel = torch.nn.functional.conv2d((inputs != 0).float(), ones, stride=2, padding=1, groups=groups)
    expected = float((per_channel.sum(dim=(2, 3)) * open_channels).sum())
    assert gated_synops(inputs, fan_out(layer, (4, 7, 7)), open_channels, groups) == pytest.approx(expected)


def test_gated_macs_hand_count() -> None:
    # Conv2d(1, 2, 3, stride 2, padding 1) on 6×6 → 3×3: dense 9·1·2·9 = 162 per frame, 81 per output channel;
    # 4 frames with 2, 1, 1 and 1 open channels → 5 · 81 = 405
    layer = nn.Conv2d(1, 2, 3, stride=2, padding=1)
    open_channels = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert gated_macs(layer, (1, 6, 6), open_channels) == 405


def test_gate_ops_per_frame() -> None:
    # pool over a 2×3×3 input: 18 adds; 1×1 predictor 2 → 3 channels: 6 MACs
    assert gate_ops((2, 3, 3), 3) == (18, 6)


def tiny_gated_net() -> nn.Module:
    """tiny-conv with channels (2, 3) on 1×6×6 frames, all conv weights 2, gates that open by hand.

    gate1 (input mean m of the frame): channel 0 always open (bias +10), channel 1 open iff 20·m − 10 > 0.
    gate2 (per-channel spike rates r of lif1): channel 0 open, channel 1 closed, channel 2 open iff 20·r₀ − 15 > 0.
    """
    model = build_model(ModelConfig(name="tiny-conv", channels=(2, 3), gating=True), (1, 6, 6), 2).eval()
    with torch.no_grad():
        model.conv1.weight.fill_(2.0)
        model.conv2.weight.fill_(2.0)
        model.gate1.predictor.weight.copy_(torch.tensor([0.0, 20.0]).view(2, 1, 1, 1))
        model.gate1.predictor.bias.copy_(torch.tensor([10.0, -10.0]))
        model.gate2.predictor.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [20.0, 0.0]]).view(3, 2, 1, 1))
        model.gate2.predictor.bias.copy_(torch.tensor([10.0, -10.0, -15.0]))
    return model


def test_gated_network_closed_form_counts() -> None:
    model = tiny_gated_net()
    frames = torch.zeros(2, 2, 1, 6, 6)  # [T, B, C, H, W]; sample 1 stays all zeros
    frames[0, 0] = 1.0  # sample 0, t = 0: all ones (mean 1)
    frames[1, 0, 0, :3, :3] = 1.0  # sample 0, t = 1: ones in the top-left 3×3 (mean 0.25)
    rows = operation_counts(model, frames, 1.58, EnergyModel())
    # gate1 masks (time-major): s0 t0 [1, 1] (20 − 10 > 0); s0 t1 [1, 0] (5 − 10 < 0); s1 t0, t1 [1, 0] → 5 of 8 open
    assert rows["gate1"]["gate_open_fraction"] == pytest.approx(5 / 8)
    # conv1 (frame-fed, 3×3 stride 2 padding 1, 6×6 → 3×3): 9·1·3·3 = 81 MACs per open channel and frame; 5 open
    # over 2 samples → 405 / 2
    assert rows["conv1"]["macs"] == pytest.approx(202.5)
    # lif1: s0 t0 every open channel spikes at all 9 positions (currents ≥ 8) → 18; s0 t1 channel 0 spikes where the
    # window holds ones, outputs (0..1, 0..1) with current 8 → 4; s1 nothing → (18 + 4) / 2
    assert rows["lif1"]["spike_count"] == pytest.approx(11.0)
    # gate2 rates: s0 t0 [1, 1] → [1, 0, 1]; s0 t1 [4/9, 0] → 8.9 − 15 < 0 → [1, 0, 0]; s1 [1, 0, 0] twice → 5 of 12
    assert rows["gate2"]["gate_open_fraction"] == pytest.approx(5 / 12)
    # conv2 (3×3 stride 2 padding 1, 3×3 → 2×2): per output channel an input at row/column i reaches r(i) rows/columns,
    # r = (1, 2, 1). s0 t0: 18 spikes, per channel 2·(1+2+1)² = 32, × 2 open = 64; s0 t1: spikes at (0..1, 0..1) of
    # channel 0: 1 + 2 + 2 + 4 = 9, × 1 open = 9; s1: none → (64 + 9) / 2
    assert rows["conv2"]["synops"] == pytest.approx(36.5)
    # lif2: s0 t0 open channels 0 and 2 spike at all 4 positions → 8; s0 t1 channel 0, currents 8, 4, 4, 2 → 4
    assert rows["lif2"]["spike_count"] == pytest.approx(6.0)
    # readout: (8 + 4) spikes × 2 classes over 2 samples
    assert rows["fc"]["synops"] == pytest.approx(12.0)
    # gates: pool C_in·H·W adds and 1×1 predictor C_in·C_out MACs per frame, × T = 2 frames per sample
    assert (rows["gate1"]["synops"], rows["gate1"]["macs"]) == (1 * 36 * 2, 1 * 2 * 2)
    assert (rows["gate2"]["synops"], rows["gate2"]["macs"]) == (2 * 9 * 2, 2 * 3 * 2)
    assert rows["gate1"]["energy_pj"] == pytest.approx(72 * 0.9 + 4 * 4.6)
    # gate predictors are not counted as weight layers of their own
    assert not any(".predictor" in name for name in rows)
    net = rows[NET]
    assert net["synops"] == pytest.approx(36.5 + 12.0 + 72 + 36)
    assert net["macs"] == pytest.approx(202.5 + 4 + 12)
    layers = [row for name, row in rows.items() if name != NET]
    assert net["energy_pj"] == pytest.approx(sum(row.get("energy_pj", 0.0) for row in layers))


def test_pooled_network_counts_pools_and_nonzero_inputs() -> None:
    # vgg9 with 2 channels per layer on 2×16×16: pools after conv2, 4, 6, 8 (16 → 8 → 4 → 2 → 1), even sizes
    model = build_model(ModelConfig(name="vgg9", channels=(2,) * 8), (2, 16, 16), 3).eval()
    with torch.no_grad():
        for index in range(1, 9):
            getattr(model, f"conv{index}").weight.fill_(0.15)  # 4–22 % of the neurons stay silent
    generator = torch.Generator().manual_seed(4)
    frames = (torch.rand(3, 2, 2, 16, 16, generator=generator) < 0.5).float()
    rows = operation_counts(model, frames, 1.58, EnergyModel())
    for index in (2, 4, 6, 8):
        # a 2×2 pool over an even plane: every spike reaches exactly one window → synops = spikes
        assert rows[f"pool{index}"]["synops"] == rows[f"lif{index}"]["spike_count"]
    assert rows["lif8"]["spike_count"] > 0
    # conv3 reads pool2's output: nonzero pooled values (windows with a spike of lif2) × 3×3 fan-out, not their sum
    with torch.no_grad(), SparsityProbe(model) as probe:
        model(frames)
    pooled = torch.nn.functional.avg_pool2d(probe.spikes["lif2"].flatten(0, 1), 2)
    assert ((pooled > 0) & (pooled < 1)).any()  # some windows are partly silent, so value ≠ count
    expected = synops((pooled > 0).float(), fan_out(model.conv3, (2, 8, 8))) / 2
    assert 0 < rows["conv3"]["synops"] == pytest.approx(expected)
    # the readout after pool8 (1×1): windows of lif8 with a spike × 3 classes
    windows = (torch.nn.functional.max_pool2d(probe.spikes["lif8"].flatten(0, 1), 2) > 0).sum()
    assert rows["fc"]["synops"] == pytest.approx(float(windows) * 3 / 2)


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
