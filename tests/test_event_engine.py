"""The event-driven engine against the dense torch path: spikes, predictions, SynOps, work ∝ spikes, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.latency import event_engine
from sparsity_latency.latency import event_kernels as kernels
from sparsity_latency.latency.event_engine import EventEngine
from sparsity_latency.latency.opcount import fan_out, synops
from sparsity_latency.models import build_model

SHAPES = {"tiny-conv": (2, 34, 34), "vgg9": (2, 32, 32), "mlp": (2, 10, 10)}
CHANNELS = {"tiny-conv": (8, 16), "vgg9": (8, 8, 16, 16, 16, 16, 16, 16), "mlp": (64, 32)}
ROUNDING = 1e-4  # float32 rounding of a dense current (sums of ≤ 150 terms of size ≤ ~10) is far below this


def calibrated(name: str, seed: int = 0, dtype: torch.dtype = torch.float32, **options) -> nn.Module:
    """A model whose BatchNorm statistics come from random spike inputs, so that every layer spikes (~15 %)."""
    torch.manual_seed(seed)
    config = ModelConfig(**{"name": name, "channels": CHANNELS[name], **options})
    model = build_model(config, SHAPES[name], 10).to(dtype)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.momentum = None  # a plain average of the batches' statistics
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(inputs(name, 4, dtype))
    return model.eval()


def inputs(name: str, batch: int = 1, dtype: torch.dtype = torch.float32, steps: int = 6) -> torch.Tensor:
    return (torch.rand(steps, batch, *SHAPES[name]) < 0.3).to(dtype)


def dense_run(model: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """Logits, each LIF layer's input currents and spikes of the dense model."""
    currents, spikes = {}, {}

    def record(key: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            currents[key], spikes[key] = args[0], out
        return hook

    hooks = [getattr(model, f"lif{i}").register_forward_hook(record(f"lif{i}")) for i in range(1, model.depth + 1)]
    try:
        with torch.inference_mode():
            logits = model(frames)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, currents, spikes


def exact_current(model: nn.Module, index: int, previous: torch.Tensor) -> torch.Tensor:
    """Layer `index`'s input current in float64 from the spikes of the layer before it (the frames for layer 1)
    [T, B, …]."""
    conv = hasattr(model, f"conv{index}")
    layer, bn = getattr(model, f"conv{index}" if conv else f"fc{index}"), getattr(model, f"bn{index}")
    hidden = previous.flatten(0, 1).double()
    pool = getattr(model, f"pool{index - 1}", None)
    if pool is not None:
        hidden = pool(hidden)
    weight = layer.quantized_weight().double()
    out = F.conv2d(hidden, weight, None, layer.stride, layer.padding) if conv else F.linear(hidden.flatten(1), weight)
    out = F.batch_norm(out, bn.running_mean.double(), bn.running_var.double(), bn.weight.double(), bn.bias.double(),
                       False, 0.0, bn.eps)
    return out.unflatten(0, previous.shape[:2])


def check_against_dense(model: nn.Module, frames: torch.Tensor) -> str | None:
    """Assert the engine gives the dense model's spikes and predictions; None, or the explained float flip.

    A spike can differ only when the dense float32 current lies within rounding of a decision boundary. At the
    first layer that differs, the engine's spikes must equal those of the model's own LIF layer driven by the
    exact (float64) current rounded once to the model's type, and the dense current must be within rounding of
    that exact current. Later layers see different inputs, so the comparison stops there.
    """
    logits, currents, spikes = dense_run(model, frames)
    result = EventEngine.from_model(model).run(frames)
    assert set(result.spikes) == set(spikes)
    first_dense = bool(result.macs)  # the frame-fed layer ran with torch (else from the frames' events)
    for index in range(1, model.depth + 1):
        name = f"lif{index}"
        assert result.spikes[name].shape == spikes[name].shape and result.spikes[name].dtype == spikes[name].dtype
        if torch.equal(result.spikes[name], spikes[name]):
            continue
        assert index > 1 or not first_dense, "a frame-fed layer run with torch must give the dense spikes"
        exact = exact_current(model, index, spikes[f"lif{index - 1}"] if index > 1 else frames)
        assert (currents[name].double() - exact).abs().max() < ROUNDING
        with torch.inference_mode():
            reference = getattr(model, name)(exact.to(frames.dtype))
        assert torch.equal(result.spikes[name], reference)
        flips = int((result.spikes[name] != spikes[name]).sum())
        return f"{name}: {flips} of {spikes[name].numel()} spikes flipped by float32 rounding of the dense currents"
    assert torch.allclose(result.logits, logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(result.logits.argmax(1), logits.argmax(1))
    return None


CASES = [(name, bits, reset) for name in SHAPES for bits in (1.58, 2, 4, 32) for reset in ("zero", "subtract")]


@pytest.mark.parametrize(("name", "membrane_bits", "reset"), CASES)
def test_spikes_and_predictions_match_dense(name: str, membrane_bits: float, reset: str) -> None:
    flips = []
    for seed, weight_bits in enumerate((32, 2, 4)):
        model = calibrated(name, seed, membrane_bits=membrane_bits, reset=reset, weight_bits=weight_bits)
        flip = check_against_dense(model, inputs(name, batch=2))
        if flip is not None:
            flips.append(flip)
    assert len(flips) <= 1, flips  # flips are rare: at most one of the three models may show one


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("membrane_bits", [1.58, 32])
def test_float64_model_is_reproduced_exactly(name: str, membrane_bits: float) -> None:
    """In float64 the dense currents are exact to ~1e-16: no flips, every spike equal."""
    model = calibrated(name, 3, torch.float64, membrane_bits=membrane_bits, weight_bits=2)
    assert check_against_dense(model, inputs(name, batch=2, dtype=torch.float64)) is None


WIDE = {"tiny-conv": (40, 72), "vgg9": (8, 40, 40, 40, 40, 40, 40, 40)}  # more outputs than one 512-bit vector


@pytest.mark.parametrize("name", list(WIDE))
@pytest.mark.parametrize(("weight_bits", "accumulator", "stored"), [
    (2, "int16", "int8"), (2, "int32", "int8"), (2, "int16", "int16"), (32, "float64", "float64")])
def test_register_blocks_match_dense(name: str, weight_bits: int, accumulator: str, stored: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers wider than one vector sum in register blocks plus a scalar tail (int16 or int32 sums of codes
    stored as int8 or as the sums' type, float64 weights; stride 2 in tiny-conv, pooled values in vgg9): every
    spike equal in float64."""
    if accumulator == "int32":
        monkeypatch.setattr(event_engine, "INT16_LIMIT", 0)  # no sum fits int16: the codes go to int32
    if stored == "int16":
        monkeypatch.setattr(event_engine, "INT8_LIMIT", 0)  # codes too large for int8: stored as the sums' type
    model = calibrated(name, 6, torch.float64, channels=WIDE[name], membrane_bits=1.58, weight_bits=weight_bits)
    engine = EventEngine.from_model(model)
    assert {np.dtype(layer.accumulator).name for layer in engine.layers.values()} == {accumulator}
    assert {layer.values.dtype.name for layer in engine.layers.values()} == {stored}
    assert check_against_dense(model, inputs(name, batch=1, dtype=torch.float64)) is None


@pytest.mark.parametrize("name", ["tiny-conv", "vgg9"])
@pytest.mark.parametrize("count", [1, 3])
def test_int8_sums_match_dense(name: str, count: int) -> None:
    """A frame-fed layer whose sums cannot pass 127 (2 polarities × 9 taps × ternary codes × counts up to 4) and
    whose 64 outputs fill whole vectors sums in int8, 64 lanes per add, its LIF layer comparing with int8
    tables; the layers after it, whose sums can, in int16: every spike equal in float64."""
    model = calibrated(name, 4, torch.float64, channels=(64,) * len(CHANNELS[name]), membrane_bits=1.58,
                       weight_bits=2)
    frames = inputs(name, dtype=torch.float64) * count
    engine = EventEngine.from_model(model)
    engine.run(frames)
    assert engine.layers[1].accumulator is np.int8 and engine.tables[1].dtype == np.int8
    assert engine.layers[2].accumulator is np.int16
    assert check_against_dense(model, frames) is None


@pytest.mark.parametrize("name", list(SHAPES))
def test_synops_equal_opcount(name: str) -> None:
    model = calibrated(name, 5, weight_bits=2)
    frames = inputs(name, batch=2)
    _, _, spikes = dense_run(model, frames)
    result = EventEngine.from_model(model).run(frames)
    conv = name != "mlp"
    assert result.macs == {}  # count frames and integer weight codes: the first layer runs from events too
    for index in range(1, model.depth + 1):
        previous = result.spikes[f"lif{index - 1}"] if index > 1 else frames
        pool = getattr(model, f"pool{index - 1}", None)
        if pool is not None:
            assert result.synops[f"pool{index - 1}"] == synops(previous, fan_out(pool, previous.shape[2:]))
            previous = pool(previous.flatten(0, 1)).unflatten(0, previous.shape[:2])
        layer = getattr(model, f"conv{index}" if conv else f"fc{index}")
        assert result.synops[layer_name(conv, index)] == synops(previous, fan_out(layer, previous.shape[2:]))
        assert result.synops[layer_name(conv, index)] > 0
    last = model.features(frames) if conv else spikes[f"lif{model.depth}"]
    assert result.synops["fc"] == synops(last.flatten(2), fan_out(model.fc, (last[0, 0].numel(),)))
    assert set(result.layer_ns) >= {layer_name(conv, 1), "lif1", "fc", layer_name(conv, 2)}
    assert all(value >= 0 for value in result.layer_ns.values())


def layer_name(conv: bool, index: int) -> str:
    return f"conv{index}" if conv else f"fc{index}"


@pytest.mark.parametrize("name", ["tiny-conv", "vgg9", "mlp"])
def test_no_spikes_no_work(name: str) -> None:
    """With no spikes after the frame-fed layer, no later layer does any accumulate (the first layer does one per
    frame event and fan-out)."""
    model = calibrated(name, 7, weight_bits=2)
    with torch.no_grad():
        for index in range(1, model.depth + 1):
            getattr(model, f"bn{index}").bias.fill_(-100.0)
    frames = inputs(name)
    result = EventEngine.from_model(model).run(frames)
    first = layer_name(name != "mlp", 1)
    assert result.synops[first] == synops(frames, fan_out(getattr(model, first), frames.shape[2:])) > 0
    assert len(result.synops) > 1 and all(value == 0 for key, value in result.synops.items() if key != first)
    assert not any(spikes.any() for spikes in result.spikes.values())
    with torch.inference_mode():
        assert torch.allclose(result.logits[0], model.fc.bias.expand(1, -1)[0])


def test_refuses_unsupported_models() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        EventEngine.from_model(build_model(ModelConfig(), (2, 34, 34), 10))
    with pytest.raises(ValueError, match="gated"):
        EventEngine.from_model(build_model(ModelConfig(gating=True), (2, 34, 34), 10).eval())
    with pytest.raises(ValueError, match="fused LIF"):
        EventEngine.from_model(build_model(ModelConfig(neuron="spquant-loop"), (2, 34, 34), 10).eval())
    with pytest.raises(ValueError, match="ConvSNN"):
        EventEngine.from_model(nn.Sequential(nn.Linear(2, 2)).eval())


@pytest.mark.parametrize("name", ["tiny-conv", "mlp"])
def test_record_spikes_off_and_reruns(name: str) -> None:
    """record_spikes=False gives the same logits, SynOps and no spikes; reruns (reused buffers) are identical."""
    model = calibrated(name, 2, weight_bits=2)
    frames = inputs(name, batch=2)
    engine = EventEngine.from_model(model)
    first = engine.run(frames)
    quiet = engine.run(frames, record_spikes=False)
    again = engine.run(frames)
    assert quiet.spikes == {}
    assert torch.equal(quiet.logits, first.logits) and torch.equal(again.logits, first.logits)
    assert quiet.synops == first.synops == again.synops
    assert all(torch.equal(again.spikes[key], first.spikes[key]) for key in first.spikes)


@pytest.mark.parametrize(("name", "membrane_bits"), [("tiny-conv", 1.58), ("mlp", 32)])
def test_sequences_longer_than_one_window(name: str, membrane_bits: float) -> None:
    """More steps than one event window (64): the membranes carry across windows, spikes equal dense."""
    model = calibrated(name, 4, torch.float64, membrane_bits=membrane_bits, weight_bits=2)
    assert check_against_dense(model, inputs(name, batch=1, dtype=torch.float64, steps=70)) is None


@pytest.mark.parametrize("name", list(SHAPES))
def test_count_frames_run_from_events_and_real_frames_densely(name: str) -> None:
    """Frames of counts > 1 (an event-camera frame with several events per pixel) run the first layer from events,
    each event adding its count times a weight row, and so do counts normalized by a whole number (the data's
    `frame_clip`: count / 3, count / 4), the 1/clip in the layer's gain; real-valued frames, or float weights, keep
    it dense."""
    model = calibrated(name, 8, torch.float64, membrane_bits=1.58, weight_bits=2)
    counts = torch.randint(0, 4, (6, 2, *SHAPES[name])).double() * (torch.rand(6, 2, *SHAPES[name]) < 0.4)
    engine = EventEngine.from_model(model)
    result = engine.run(counts)
    first = layer_name(name != "mlp", 1)
    assert result.macs == {} and result.synops[first] == synops(counts, fan_out(getattr(model, first),
                                                                                  counts.shape[2:]))
    assert check_against_dense(model, counts) is None
    for clip in (3, 4):  # count / frame_clip: from events, the same SynOps
        result = engine.run(counts.clamp(max=clip) / clip)
        assert result.macs == {} and result.synops[first] == synops(counts, fan_out(getattr(model, first),
                                                                                      counts.shape[2:]))
    # with clip 4 the frames are exact binary fractions, so the harness's exact currents are exact (1/3 is not)
    assert check_against_dense(model, counts.clamp(max=4) / 4) is None
    real = counts * torch.rand(counts.shape)  # not counts: dense, with the dense model's own currents and spikes
    dense = engine.run(real)
    assert first in dense.macs and first not in dense.synops
    assert check_against_dense(model, real) is None
    float_model = calibrated(name, 8, torch.float64, membrane_bits=1.58, weight_bits=32)
    assert first in EventEngine.from_model(float_model).run(counts).macs


def random_conv(seed: int, channels: int, density: float, values: int, kernel: int, stride: int, pad: int
                ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, int]:
    """For the kernels' tests: counts 1…`values` at `density` [3, C_in, 11, 9], F.conv2d's float64 output
    [3, H_out, W_out, 37] of random integer weights (37 outputs leave a partial vector), and those weights' rows
    as the engine stores them for such counts: int8, `folded` up to 4, and the elements between copies."""
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, values + 1, (3, channels, 11, 9), generator=generator)
    counts *= torch.rand(counts.shape, generator=generator) < density
    weight = torch.randint(-3, 4, (37, channels, kernel, kernel), generator=generator)
    expected = F.conv2d(counts.double(), weight.double(), stride=stride, padding=pad).permute(0, 2, 3, 1)
    rows, fold = event_engine.folded(weight.permute(2, 3, 1, 0).reshape(-1, 37).numpy().astype(np.int32), values)
    return counts, expected, rows.astype(np.int8), fold  # int8 rows, summed in int32 (sign-extended as they load)


def conv_synops(counts: torch.Tensor, channels_out: int, kernel: int, stride: int, pad: int) -> float:
    """`opcount.synops` of the nonzero counts [T, C_in, H, W] through a conv: events × true fan-out."""
    layer = nn.Conv2d(counts.shape[1], channels_out, kernel, stride, pad)
    return synops((counts > 0).double().unsqueeze(1), fan_out(layer, tuple(counts.shape[1:])))


@pytest.mark.parametrize(("kernel", "stride", "pad", "values"),
                         [(3, 1, 1, 1), (3, 2, 1, 4), (5, 3, 2, 3), (2, 2, 0, 7), (1, 1, 0, 2)])
def test_scatter_equals_the_convolution(kernel: int, stride: int, pad: int, values: int) -> None:
    """`conv_scatter` (the frame-fed layer's input-stationary sums) against F.conv2d in float64 on random counts,
    for every geometry: each input position's taps reach exactly the outputs the convolution gives it. Counts up
    to 4 add pre-scaled weight rows (`folded`), larger ones multiply; 37 output channels leave a partial vector;
    int8 weights add into int32 sums."""
    counts, expected, rows, fold = random_conv(kernel * 100 + stride * 10 + pad, 2, 0.3, values, kernel, stride, pad)
    steps, channels, height, width = counts.shape
    out_h, out_w, channels_out = expected.shape[1:]
    t, c, p = torch.nonzero(counts.reshape(steps, channels, -1), as_tuple=True)  # step-major, channel-major
    starts = np.searchsorted(t.numpy(), np.arange(steps + 1)).astype(np.int64)
    taps = event_engine._scatter_taps(*(event_engine._taps(size, out, kernel, stride, pad)[index] for size, out, index
                                        in ((height, out_h, np.arange(height * width) // width),
                                            (width, out_w, np.arange(height * width) % width))),
                                      kernel, channels, channels_out, out_w)
    acc = np.full((steps, out_h, out_w, channels_out), 99, dtype=np.int32)  # zeroed by the kernel step by step
    ops = kernels.conv_scatter(starts, p.numpy().astype(np.int32), c.numpy().astype(np.int32),
                               counts[t, c, p // width, p % width].numpy().astype(np.int32), True, fold, channels,
                               kernel, stride, rows, acc, taps)
    assert np.array_equal(acc, expected.numpy())
    assert ops == conv_synops(counts, channels_out, kernel, stride, pad)


@pytest.mark.parametrize(("kernel", "stride", "pad", "values"),
                         [(3, 1, 1, 1), (3, 2, 1, 4), (5, 3, 2, 3), (2, 2, 0, 7), (1, 1, 0, 2), (2, 3, 3, 1)])
def test_gather_equals_the_convolution(kernel: int, stride: int, pad: int, values: int) -> None:
    """`conv_gather` (every event-fed conv's output-stationary sums) against F.conv2d in float64 on random counts,
    for every geometry: each output neuron's band stretch holds exactly the events of its receptive field, the
    copies past a vector's worth of events included (40 channels at density 0.5: positions hold more than the 8
    keys or 16 values of a vector). Counts up to 4 add pre-scaled weight rows (`folded`), larger ones multiply;
    37 output channels leave a partial vector; int8 weights add into int32 sums. SynOps are events × reached
    outputs."""
    counts, expected, rows, fold = random_conv(kernel * 100 + stride * 10 + pad + values, 40, 0.5, values, kernel,
                                               stride, pad)
    steps, channels, height, width = counts.shape
    out_h, out_w, channels_out = expected.shape[1:]
    t, p, c = torch.nonzero(counts.permute(0, 2, 3, 1).reshape(steps, -1, channels), as_tuple=True)  # by position
    starts = np.searchsorted(t.numpy(), np.arange(steps + 1)).astype(np.int64)
    y, x = np.divmod(np.arange(height * width, dtype=np.int64), width)
    spare = event_engine.SPARE_EVENTS
    scratch = [np.zeros(height * width + 1, np.int64), np.zeros(height * width * channels + spare, np.int64),
               np.zeros(height * width * channels + spare, np.int32),
               np.zeros(kernel * width * channels + spare, np.int64),
               np.zeros(kernel * width * channels + spare, np.int32), np.zeros(width + 1, np.int64)]
    acc = np.full((steps, out_h, out_w, channels_out), 99, dtype=np.int32)  # every output written
    ops = kernels.conv_gather(starts, p.numpy().astype(np.int32), c.numpy().astype(np.int32),
                              counts[t, c, p // width, p % width].numpy().astype(np.int32), values > 1, fold, height,
                              width, channels, kernel, stride, pad, rows, acc,
                              (y * kernel + x) * channels * channels_out, *scratch)
    assert np.array_equal(acc, expected.numpy())
    assert ops == conv_synops(counts, channels_out, kernel, stride, pad)


@pytest.mark.parametrize(("kernel", "stride", "pad", "channels"),
                         [(3, 1, 1, 2), (3, 2, 1, 2), (4, 2, 1, 2), (5, 3, 2, 1), (2, 2, 0, 3), (1, 1, 0, 8),
                          (2, 3, 3, 2)])  # the last: stride and padding beyond the kernel (edge rows reach nothing)
@pytest.mark.parametrize(("accumulator", "channels_out"), [(np.int32, 37), (np.int16, 32), (np.int8, 64)])
def test_lookup_equals_the_convolution(kernel: int, stride: int, pad: int, channels: int, accumulator: type,
                                       channels_out: int) -> None:
    """`conv_lookup` (the frame-fed layer's sums by table look-up) against F.conv2d on random binary frames, for
    every geometry with kernel rows of up to 8 inputs (k·C_in): the patterns read from the lines are each kernel
    row's inputs, the table sums their weight rows, and the SynOps are events × reached outputs. 37 output
    channels leave a partial vector (int32); int8 sums fill 64-lane vectors."""
    generator = torch.Generator().manual_seed(kernel * 100 + stride * 10 + pad + channels_out)
    steps, height, width = 3, 11, 9
    frames = (torch.rand((steps, channels, height, width), generator=generator) < 0.3).to(torch.int64)
    top = 2 if accumulator == np.int8 else 3  # int8: no sum can pass 127 (2·k·k·C_in ≤ 64)
    weight = torch.randint(-top, top + 1, (channels_out, channels, kernel, kernel), generator=generator)
    expected = F.conv2d(frames.double(), weight.double(), stride=stride, padding=pad).permute(0, 2, 3, 1)
    out_h, out_w = expected.shape[1:3]
    t, c, p = torch.nonzero(frames.reshape(steps, channels, -1), as_tuple=True)
    starts = np.searchsorted(t.numpy(), np.arange(steps + 1)).astype(np.int64)
    rows = weight.permute(2, 3, 1, 0).reshape(-1, channels_out).numpy().astype(np.int8)  # widened by the table
    table = event_engine._lookup_table(rows, accumulator, kernel, channels)
    line = (width + 2 * pad) * channels + 8
    y, x = np.divmod(np.arange(height * width), width)
    byte_of = y * line + (x + pad) * channels  # pixel (x, c) of row y at byte (x + pad)·C_in + c of line y
    reach = [sum(((z + pad - k) % stride == 0) & ((z + pad - k) // stride >= 0) & ((z + pad - k) // stride < out)
                 for k in range(kernel)) for z, out in ((y, out_h), (x, out_w))]  # kernel rows / columns reaching
    lines = np.full((height, line), 7, dtype=np.uint8)  # cleared by the kernel step by step
    acc = np.full((steps, out_h, out_w, channels_out), 99, dtype=accumulator)  # every output written
    ops = kernels.conv_lookup(starts, p.numpy().astype(np.int32), c.numpy().astype(np.int32), height, channels,
                              kernel, stride, pad, byte_of, (reach[0] * reach[1]).astype(np.int64), table, acc, lines)
    assert np.array_equal(acc, expected.numpy())
    assert ops == conv_synops(frames, channels_out, kernel, stride, pad)


@pytest.mark.parametrize("density", [0.01, 0.3])
def test_first_layer_looks_up_or_scatters_whichever_is_cheaper(density: float,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Binary frames: the frame-fed conv looks its sums up when the events are many (work ∝ outputs) and scatters
    them when few (work ∝ events), with the dense path's spikes either way."""
    called = []
    for name in ("conv_lookup", "conv_scatter"):
        kernel = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, kernel=kernel, name=name: called.append(name) or kernel(*args))
    model = calibrated("tiny-conv", 5, torch.float64, membrane_bits=1.58, weight_bits=2)
    frames = (torch.rand(6, 1, *SHAPES["tiny-conv"]) < density).double()
    assert check_against_dense(model, frames) is None
    assert set(called) == {"conv_scatter" if density < 0.05 else "conv_lookup"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("by_position", [False, True])
def test_frame_events_list_every_nonzero_pixel(dtype: type, by_position: bool) -> None:
    """`frame_events` against torch.nonzero: every nonzero count once, in channel-then-position order (16 positions
    at a time, 37 positions leaving a partial group) or position-then-channel order, with its count when counted
    (read back from count / 3 too)."""
    generator = torch.Generator().manual_seed(7)
    frames = torch.randint(0, 4, (3, 2, 37), generator=generator).to(torch.float64)
    frames *= torch.rand(frames.shape, generator=generator) < 0.4
    order = (0, 2, 1) if by_position else (0, 1, 2)  # the step, then the listing's outer and inner index
    t, outer, inner = torch.nonzero(frames.permute(*order), as_tuple=True)
    p, c = (outer, inner) if by_position else (inner, outer)
    for counted, scale in ((False, 1.0), (True, 1.0), (True, 3.0)):  # 3: counts / 3, as frame_clip normalizes them
        x = frames.numpy().astype(dtype) / dtype(scale)
        starts, pos, chan, values = np.zeros(4, np.int64), *(np.zeros(3 * 2 * 37 + 16, np.int32) for _ in range(3))
        kernels.frame_events(x, x.view(f"i{x.itemsize}"), scale, counted, by_position, starts, pos, chan, values)
        assert starts.tolist() == np.searchsorted(t.numpy(), np.arange(4)).tolist()
        assert pos[:len(t)].tolist() == p.tolist() and chan[:len(t)].tolist() == c.tolist()
        if counted:
            assert values[:len(t)].tolist() == frames[t, c, p].int().tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [None, -1.0, -0.0, 0.5, 1025.0, np.inf, np.nan, 3e9])
def test_count_range_reads_the_bit_patterns_right(dtype: type, special: float | None) -> None:
    """`largest_count` (`count_range`'s integer min / max over the floats' bit patterns) against the plain float
    computation: the frames count as event counts exactly when every value is a whole number in
    0…FRAME_COUNT_LIMIT, and then the largest is the largest value."""
    values = np.random.default_rng(0).integers(0, 1025, 1000).astype(dtype)
    if special is not None:
        values[617] = special
    high = event_engine.largest_count(values)
    counts = high is not None and high <= event_engine.FRAME_COUNT_LIMIT
    expected = bool(np.all(values == np.floor(values)) and np.all(values >= 0) and not np.signbit(values).any()
                    and values.max() <= event_engine.FRAME_COUNT_LIMIT)
    assert counts == expected
    if high is not None and not np.isnan(values).any():
        assert high == values.max()
    assert (special is None) == expected
