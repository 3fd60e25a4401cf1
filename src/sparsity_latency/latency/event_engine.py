"""Event-driven CPU inference (`--backend event`): propagate only the spikes that occur.

A trained `ConvSNN` (tiny-conv, vgg9) or `SpikingMLP` runs layer by layer over one sample's whole sequence:

1. The first weight layer is fed by real-valued frames: it is computed densely with torch (the model's own
   convolution / linear and BatchNorm, so its currents are bit-identical to the dense path's), for the whole
   batch at once.
2. Every later weight layer is fed by events: the spikes of the LIF layer before it, or the nonzero values of
   an average pool of those spikes. Each event scatters its weight column into integer or float64 accumulators
   (`event_kernels.conv_scatter` / `linear_scatter`): the work is events × true fan-out, the SynOps.
   Average pooling is event-driven too (one increment per spike); a conv fed by pooled spikes takes the pooled
   counts (1…k²) as integer event values, the 1/k² going into the layer's gain, so its work is ∝ the nonzeros.
3. BatchNorm (eval) and the weight quantizer's step fold into a per-channel gain and offset applied when the
   LIF layer reads its accumulator: x = acc·gain + offset.
4. LIF layers run the integer fixed-point membrane update of `neurons.integer` for quantized membranes with
   β = 2^−k, and otherwise `neurons.kernels`' float32 step; they write the spikes and the next layer's events.
5. The readout accumulates its weight columns for the last layer's spikes (plus its bias) at every step, in
   float64, and averages over time: logits = mean_t fc(s_t).

Accumulators: when every nonzero quantized weight is an exact integer multiple of one step (ternary weights
always are), the scatter adds the integer codes in int16 (32 lanes per AVX-512 add) when no sum can pass 2^15,
else in int32: the sums are exact.
Otherwise the float32 weights are added in float64. Either way a current differs from
the dense float32 one only by the dense path's own rounding, so a spike can differ only where the dense
membrane lies within float32 rounding of a decision boundary (the tests check that the spikes are equal).

Timings (`layer_ns`) are per weight, pool and LIF layer, summed over the run; `synops` counts the accumulates
actually performed, equal to `latency.opcount.synops(inputs, fan_out(layer, shape))` of each event-fed layer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.latency import event_kernels as kernels
from sparsity_latency.models.conv_snn import ConvSNN
from sparsity_latency.models.mlp import SpikingMLP
from sparsity_latency.neurons.integer import MAX_FRAC_BITS
from sparsity_latency.neurons.multistep import MultiStepLIF

INT16_LIMIT = 2**15 - 1
INT32_LIMIT = 2**31 - 1
FLOAT64_EXACT = 2**53
CODE_LIMIT = 1 << 10  # largest integer weight code accepted for the integer accumulators


@dataclass
class EventResult:
    """Outputs of `EventEngine.run` for frames [T, B, …]."""

    logits: torch.Tensor  # [B, classes]
    spikes: dict[str, torch.Tensor]  # LIF layer name → spikes [T, B, …], frames' dtype, the dense layer's layout
    layer_ns: dict[str, float]  # layer name → nanoseconds, summed over the run
    synops: dict[str, float]  # event-fed layer name → accumulates performed
    macs: dict[str, float] = field(default_factory=dict)  # frame-fed layer name → dense multiply-accumulates


@dataclass
class _Weights:
    """An event-fed layer's weights, [C_in, k, k, C_out] or [F_in, F_out], and its per-output gain and offset."""

    values: np.ndarray  # integer codes (int16, int32, or float64 beyond int32: exact sums), or float64 weights
    gain: np.ndarray  # float64 [C_out]
    offset: np.ndarray  # float64 [C_out]


@dataclass
class _Lif:
    name: str
    quantized: bool
    integer: bool
    zero_reset: bool
    beta: float
    threshold: float
    low: float
    high: float
    frac: int
    shift: int

    def state(self, shape: tuple[int, int], dtype: type) -> np.ndarray:
        """The membranes at rest, [P, C]: stored levels (int32) on the integer path, else the model's float type."""
        return np.zeros(shape, dtype=np.int32 if self.integer else dtype)

    def run(self, acc: np.ndarray, gain: np.ndarray, offset: np.ndarray, state: np.ndarray, clear: bool,
            spikes: np.ndarray | None, active: np.ndarray, masks: np.ndarray) -> int:
        """Update `state` over acc [P, T, C]; write the events (returned: how many) and, if given, spikes [T, P·C]."""
        record = spikes is not None
        spikes = spikes if record else _NO_SPIKES
        if self.integer:
            return kernels.lif_integer(acc, gain, offset, self.frac, self.shift, int(self.threshold) << self.frac,
                                       int(self.low), int(self.high), self.zero_reset, state, clear, record, spikes,
                                       active, masks)
        dtype = state.dtype.type
        return kernels.lif_float(acc, gain, offset, dtype(self.beta), dtype(self.threshold), self.quantized,
                                 dtype(self.low), dtype(self.high), self.zero_reset, state, clear, record, spikes,
                                 active, masks)


_NO_SPIKES = np.zeros((0, 0), dtype=np.uint8)
_NO_VALUES = np.zeros((0, 0), dtype=np.int32)


def _lif(name: str, layer: nn.Module) -> _Lif:
    if not isinstance(layer, MultiStepLIF):
        raise ValueError(f"the event engine runs only the fused LIF layer (neuron 'spquant'); {name} is "
                         f"{type(layer).__name__}")
    d = layer.dynamics
    low, high = d.levels if d.quantized else (0.0, 0.0)
    frac, shift = d.frac_bits, d.leak_shift
    if frac is not None and frac > MAX_FRAC_BITS:
        raise ValueError(f"{name}: a leak β = {d.beta} below 2^-{MAX_FRAC_BITS - 1} has no integer membrane path")
    return _Lif(name, d.quantized, frac is not None, d.reset == "zero", d.beta, d.threshold, low, high,
                frac or 0, shift or 0)


def _fold_bn(name: str, bn: nn.Module, channels: int, bias: torch.Tensor | None, step: float) -> tuple[np.ndarray,
                                                                                                       np.ndarray]:
    """gain, offset [C] (float64) with BN(step·acc + bias) = acc·gain + offset, BatchNorm in eval mode."""
    if not isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d) or bn.running_mean is None:
        raise ValueError(f"{name}: the event engine needs BatchNorm with running statistics after each weight layer")
    ones = torch.ones(channels, dtype=torch.float64)
    scale = (bn.weight.detach().double() if bn.weight is not None else ones) / torch.sqrt(
        bn.running_var.double() + bn.eps)
    shift = bn.bias.detach().double() if bn.bias is not None else 0 * ones
    mean = bn.running_mean.double() - (bias.detach().double() if bias is not None else 0)
    return (scale * step).numpy(), (shift - mean * scale).numpy()


def _weights(name: str, weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module, input_scale: float,
             max_value: int) -> _Weights:
    """Event layout [in, …, out] of `weight` [out, in, …]: integer codes when exact, else float64."""
    w = weight.detach().double()
    w = w.permute(*range(1, w.dim()), 0).contiguous()  # [in, (k, k,) out]
    magnitudes = w[w != 0].abs()
    step = float(magnitudes.min()) if magnitudes.numel() else 1.0
    codes = torch.round(w / step)
    worst = float(codes.abs().amax(dim=-1).sum(dim=tuple(range(w.dim() - 1))).max()) * max_value if w.numel() else 0
    if w.numel() and torch.equal(codes * step, w) and float(codes.abs().max()) <= CODE_LIMIT and worst <= FLOAT64_EXACT:
        values = codes.numpy().astype(np.int16 if worst <= INT16_LIMIT else np.int32 if worst <= INT32_LIMIT
                                      else np.float64)
    else:
        values, step = w.numpy(), 1.0
    gain, offset = _fold_bn(name, bn, weight.shape[0], bias, step * input_scale)
    return _Weights(values, gain, offset)


def _timed(layer_ns: dict[str, float], name: str, start: int) -> int:
    now = time.perf_counter_ns()
    layer_ns[name] = layer_ns.get(name, 0.0) + (now - start)
    return now


class EventEngine:
    """A trained ConvSNN / SpikingMLP compiled for event-driven inference on the CPU (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.conv = isinstance(model, ConvSNN)
        self.depth = model.depth
        self.lifs = [_lif(f"lif{i}", getattr(model, f"lif{i}")) for i in range(1, self.depth + 1)]
        self.pools: dict[int, int] = {}
        prefix = "conv" if self.conv else "fc"
        self.first = getattr(model, f"{prefix}1")
        self.first_weight = self.first.quantized_weight() if hasattr(self.first, "quantized_weight") else (
            self.first.weight.detach())
        self.layers: dict[int, _Weights] = {}
        for i in range(1, self.depth + 1):
            layer = getattr(model, f"{prefix}{i}")
            if self.conv:
                self._check_conv(f"conv{i}", layer)
                pool = getattr(model, f"pool{i}", None)
                if pool is not None:
                    self.pools[i] = self._check_pool(f"pool{i}", pool)
            if i > 1:
                weight = layer.quantized_weight() if hasattr(layer, "quantized_weight") else layer.weight.detach()
                pooled = self.pools.get(i - 1, 1)
                self.layers[i] = _weights(f"{prefix}{i}", weight, layer.bias, getattr(model, f"bn{i}"),
                                          1.0 / pooled**2, pooled**2)
        self.readout = model.fc
        self.first_bn = model.bn1
        _fold_bn("bn1", self.first_bn, self.first_weight.shape[0], None, 1.0)  # checks it

    @classmethod
    def from_model(cls, model: nn.Module) -> EventEngine:
        """The engine for `model` (eval mode); ValueError for what it cannot run."""
        if not isinstance(model, ConvSNN | SpikingMLP):
            raise ValueError(f"the event engine runs ConvSNN (tiny-conv, vgg9) and SpikingMLP models, not "
                             f"{type(model).__name__}")
        if next(model.parameters()).dtype not in (torch.float32, torch.float64):
            raise ValueError("the event engine runs float32 or float64 models")
        if model.training:
            raise ValueError("put the model in eval mode (model.eval()) before building the event engine: "
                             "BatchNorm must use its running statistics")
        if any(hasattr(model, f"gate{i}") for i in range(1, model.depth + 1)):
            raise ValueError("the event engine does not run channel-gated models (gating = true)")
        return cls(model)

    @staticmethod
    def _check_conv(name: str, layer: nn.Module) -> None:
        if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or layer.dilation != (1, 1) or (
                layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1]
                or layer.padding[0] != layer.padding[1] or layer.padding_mode != "zeros"):
            raise ValueError(f"{name}: the event engine takes square, ungrouped, undilated, zero-padded convolutions")

    @staticmethod
    def _check_pool(name: str, pool: nn.Module) -> int:
        size = pool.kernel_size if isinstance(pool, nn.AvgPool2d) else None
        if (size is None or pool.stride != size or pool.padding != 0 or pool.ceil_mode
                or pool.divisor_override is not None or not isinstance(size, int)):
            raise ValueError(f"{name}: the event engine takes only AvgPool2d(k) (stride k, no padding)")
        return size

    # -- running ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self, frames: torch.Tensor, record_spikes: bool = True) -> EventResult:
        """Logits, spikes, per-layer time and SynOps for frames [T, B, C, H, W] (one sample at a time).

        `record_spikes=False` leaves `EventResult.spikes` empty and skips writing and converting them (what
        inference needs: logits only); everything else is the same.
        """
        try:
            return self._run(frames, record_spikes)
        except BaseException:
            self._buffers = {}  # accumulators may be left nonzero
            raise

    def _run(self, frames: torch.Tensor, record_spikes: bool) -> EventResult:
        steps, batch = frames.shape[:2]
        layer_ns: dict[str, float] = {}
        synops: dict[str, float] = {}
        start = time.perf_counter_ns()
        currents = self._first_layer(frames)  # [B, P, T, C] float32, channels-last
        macs = {("conv1" if self.conv else "fc1"): float(self._first_macs(frames.shape[2:])) * steps * batch}
        _timed(layer_ns, "conv1" if self.conv else "fc1", start)
        logits, spikes = [], []
        for b in range(batch):
            sample_logits, sample_spikes = self._sample(currents[b], frames.shape[2:], layer_ns, synops,
                                                        record_spikes)
            logits.append(sample_logits)
            spikes.append(sample_spikes)
        result_spikes = {}
        for i, lif in enumerate(self.lifs if record_spikes else ()):
            stacked = torch.from_numpy(np.stack([s[i][0] for s in spikes], axis=1))  # [T, B, N]
            shape = spikes[0][i][1]
            if len(shape) == 3:  # channels-last map → [T, B, C, H, W]
                stacked = stacked.view(steps, batch, *shape).permute(0, 1, 4, 2, 3)
            result_spikes[lif.name] = stacked.to(frames.dtype).contiguous()
        return EventResult(torch.from_numpy(np.stack(logits)).to(frames.dtype), result_spikes, layer_ns, synops,
                           macs)

    def _first_macs(self, shape: torch.Size) -> int:
        from sparsity_latency.latency.opcount import dense_macs
        return dense_macs(self.first, tuple(shape) if self.conv else (math.prod(shape),))

    def _first_layer(self, frames: torch.Tensor) -> np.ndarray:
        """The frame-fed layer's currents for all samples, as the dense model computes them, [B, P, T, C]."""
        steps, batch = frames.shape[:2]
        if self.conv:
            current = self.first_bn(self.first._conv_forward(frames.flatten(0, 1), self.first_weight, None))
            current = current.unflatten(0, (steps, batch)).permute(1, 3, 4, 0, 2)  # [B, H, W, T, C]
            return current.contiguous().view(batch, -1, steps, current.shape[-1]).numpy()
        current = self.first_bn(F.linear(frames.flatten(2).flatten(0, 1), self.first_weight, self.first.bias))
        current = current.unflatten(0, (steps, batch)).transpose(0, 1)  # [B, T, N]
        return current.contiguous().view(batch, 1, steps, -1).numpy()

    def _buffer(self, key: tuple, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A zeroed array kept between runs; the kernels that use it leave it zero again (accumulators, grids)."""
        buffers = self.__dict__.setdefault("_buffers", {})
        key = (*key, shape, np.dtype(dtype).str)
        if key not in buffers:
            buffers[key] = np.zeros(shape, dtype=dtype)
        return buffers[key]

    def _sample(self, current: np.ndarray, frame_shape: torch.Size, layer_ns: dict[str, float],
                synops: dict[str, float], record: bool
                ) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[int, ...]]]]:
        """One sample (current [P, T, C]): logits [classes] (float64) and, when `record`, each LIF layer's
        spikes [T, N] (uint8) with its map shape; in windows of at most `kernels.MAX_STEPS` steps."""
        steps = current.shape[1]
        if self.conv:
            _, height, width = frame_shape
            stride, pad = self.first.stride[0], self.first.padding[0]
            k = self.first.kernel_size[0]
            height, width = (height + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
            first_shape: tuple[int, ...] = (height, width, current.shape[2])
        else:
            first_shape = (current.shape[2],)
        ones = np.ones(current.shape[2])
        zeros = np.zeros_like(ones)
        states: list[np.ndarray] = []
        recorded: list[tuple[np.ndarray, tuple[int, ...]]] = []
        readout = []
        for t0 in range(0, steps, kernels.MAX_STEPS):
            window = min(steps - t0, kernels.MAX_STEPS)
            acc = np.ascontiguousarray(current[:, t0:t0 + window])
            gain, offset, shape = ones, zeros, first_shape
            active = masks = np.empty(0, dtype=np.int32)
            values, count, has_pooled = _NO_VALUES, 0, False
            for i in range(1, self.depth + 1):
                name = f"conv{i}" if self.conv else f"fc{i}"
                begin = time.perf_counter_ns()
                if i > 1:
                    weights = self.layers[i]
                    if self.conv:
                        layer = getattr(self.model, name)
                        stride, pad = layer.stride[0], layer.padding[0]
                        k = layer.kernel_size[0]
                        out_h, out_w = (shape[0] + 2 * pad - k) // stride + 1, (shape[1] + 2 * pad - k) // stride + 1
                        channels_out = weights.values.shape[-1]
                        acc = self._buffer(("acc", i), (out_h * out_w, window, channels_out), weights.values.dtype)
                        ops = kernels.conv_scatter(active, count, masks, values, has_pooled, shape[1], shape[2],
                                                   weights.values, stride, pad, out_h, out_w, acc)
                        shape = (out_h, out_w, channels_out)
                    else:
                        features = weights.values.shape[1]
                        acc = self._buffer(("acc", i), (1, window, features), weights.values.dtype)
                        ops = kernels.linear_scatter(active, count, masks, values, has_pooled, weights.values, acc[0])
                        shape = (features,)
                    synops[name] = synops.get(name, 0.0) + ops
                    gain, offset = weights.gain, weights.offset
                    begin = _timed(layer_ns, name, begin)
                lif = self.lifs[i - 1]
                neurons = math.prod(shape)
                if t0 == 0:
                    states.append(lif.state((acc.shape[0], acc.shape[2]), current.dtype.type))
                    if record:
                        recorded.append((np.empty((steps, neurons), dtype=np.uint8), shape))
                active = self._buffer(("active", i), (neurons,), np.int32)
                masks = self._buffer(("masks", i), (neurons,), np.uint64)
                count = lif.run(acc, gain, offset, states[i - 1], i > 1, recorded[i - 1][0][t0:t0 + window]
                                if record else None, active, masks)
                begin = _timed(layer_ns, f"lif{i}", begin)
                values, has_pooled = _NO_VALUES, False
                if i in self.pools:
                    size = self.pools[i]
                    out_h, out_w = shape[0] // size, shape[1] // size
                    cells = out_h * out_w * shape[2]
                    grid = self._buffer(("grid", i), (cells, window), np.int32)
                    touched = self._buffer(("touched", i), (cells,), np.uint8)
                    pooled_active = self._buffer(("pooled", i), (cells,), np.int32)
                    pooled_masks = self._buffer(("pooled_masks", i), (cells,), np.uint64)
                    values = self._buffer(("values", i), (cells, window), np.int32)
                    count, ops = kernels.pool_events(active, count, masks, window, shape[1], shape[2], size, out_h,
                                                     out_w, grid, touched, pooled_active, pooled_masks, values)
                    active, masks, shape, has_pooled = pooled_active, pooled_masks, (out_h, out_w, shape[2]), True
                    synops[f"pool{i}"] = synops.get(f"pool{i}", 0.0) + ops
                    _timed(layer_ns, f"pool{i}", begin)
            begin = time.perf_counter_ns()
            readout.append(self._readout(active, count, masks, values, has_pooled, shape, window, synops))
            _timed(layer_ns, "fc", begin)
        return np.concatenate(readout).mean(axis=0), recorded

    def _readout(self, active: np.ndarray, count: int, masks: np.ndarray, values: np.ndarray, has_values: bool,
                 shape: tuple[int, ...], window: int, synops: dict[str, float]) -> np.ndarray:
        """fc(s_t) [window, classes] (float64) of the last layer's events."""
        weight = self._readout_weight(shape)
        acc = np.zeros((window, weight.shape[1]))
        ops = kernels.linear_scatter(active, count, masks, values, has_values, weight, acc)
        synops["fc"] = synops.get("fc", 0.0) + ops
        scale = 1.0 / self.pools[self.depth] ** 2 if has_values else 1.0
        bias = self.readout.bias.detach().double().numpy() if self.readout.bias is not None else 0.0
        return acc * scale + bias

    def _readout_weight(self, shape: tuple[int, ...]) -> np.ndarray:
        """The readout's weight [F_in, classes] in float64, its inputs in channels-last order (cached by shape)."""
        cache = self.__dict__.setdefault("_readout_cache", {})
        if shape not in cache:
            w = self.readout.weight.detach().double()
            if len(shape) == 3:
                height, width, channels = shape
                w = w.view(-1, channels, height, width).permute(2, 3, 1, 0)
            else:
                w = w.t()
            cache[shape] = w.reshape(-1, w.shape[-1]).contiguous().numpy()
        return cache[shape]
