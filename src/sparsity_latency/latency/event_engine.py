"""Event-driven CPU inference (`--backend event`): propagate only the spikes that occur.

A trained `ConvSNN` (tiny-conv, vgg9) or `SpikingMLP` runs layer by layer over one sample's whole sequence:

1. The first weight layer is fed by frames. When they hold event counts (integers 0…`FRAME_COUNT_LIMIT`, what
   an event camera's frames are, or counts / `frame_clip`: `frame_counts`) and its weights are integer codes, it
   runs from events like every later layer:
   each nonzero pixel adds its count times its weight rows (`_frame_events`; with ≤ `SCATTER_CHANNELS` input
   channels, polarities, into the outputs it reaches: `event_kernels.conv_scatter`, or, for binary frames with
   many events, by looking each output's kernel rows up in a table of their input patterns' sums:
   `event_kernels.conv_lookup`, whichever is cheaper for the window's event count). Otherwise (real-valued frames,
   float weights) it is computed densely with torch (the model's own convolution / linear and BatchNorm, so its
   currents are bit-identical to the dense path's), for the whole batch at once; its work is then MACs.
2. Every later weight layer is fed by events: the spikes of the LIF layer before it, or the nonzero values of
   an average pool of those spikes, as step-major (position, channel) lists. Each output neuron sums, in SIMD
   registers, the weight rows of the events inside its receptive field (`event_kernels.conv_gather` /
   `linear_gather`): the adds are events × true fan-out, the SynOps; each output neuron costs one store besides.
   Average pooling is event-driven too: the LIF layer before a pool adds its spikes into the pool's window counts
   as it updates the membranes, and the nonzero counts become the pool's events (`event_kernels.pool_grid`). A
   conv fed by pooled spikes takes the counts (1…k²) as integer event values, the 1/k² going into the layer's
   gain, so its work is ∝ the nonzeros; counts up to `FOLD_LIMIT` add pre-scaled weight rows (`folded`).
3. BatchNorm (eval) and the weight quantizer's step fold into a per-channel gain and offset applied when the
   LIF layer reads its accumulator: x = acc·gain + offset.
4. LIF layers run the integer fixed-point membrane update of `neurons.integer` for quantized membranes with
   β = 2^−k, and otherwise `neurons.kernels`' float32 step, over every neuron and step (a fixed cost); they
   write the spikes and the next layer's events.
5. The readout accumulates its weight columns for the last layer's spikes (plus its bias) at every step, in
   float64, and averages over time: logits = mean_t fc(s_t).

Accumulators: when every nonzero quantized weight is an exact integer multiple of one step (ternary weights
always are), the integer codes are added in int8 (64 lanes per 512-bit add, `latency.simd`) when no sum can pass
127 and the outputs fill whole vectors (a frame-fed layer of polarities), in int16 (32 lanes) when none can pass
2^15, else in int32: the sums are exact. Codes that fit int8 are stored as int8 whatever the sums' type, and
widened as they load (half the bytes to stream). Otherwise the float32 weights are added in float64. Either way a
current differs from the dense float32 one only by the dense path's own rounding, so a spike can differ only
where the dense membrane lies within float32 rounding of a decision boundary (the tests check that the spikes
are equal).

Every buffer and kernel argument of a layer is bound once per input shape and window length (`_Plan`,
`_Stage`), so that a run is its kernel calls; the set-up they replaced cost ~0.25 ms per sample.

Timings (`layer_ns`) are per weight, pool and LIF layer, summed over the run; `synops` counts the accumulates
actually performed, equal to `latency.opcount.synops(inputs, fan_out(layer, shape))` of each event-fed layer
(the first layer included when it runs from events; `macs` holds it when it runs densely).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.latency import event_kernels as kernels
from sparsity_latency.latency.lif_tables import MAX_TABLE_LEVELS, lif_table, reset_level
from sparsity_latency.latency.opcount import dense_macs
from sparsity_latency.latency.simd import lanes
from sparsity_latency.models.conv_snn import ConvSNN
from sparsity_latency.models.mlp import SpikingMLP
from sparsity_latency.neurons.integer import MAX_FRAC_BITS
from sparsity_latency.neurons.multistep import MultiStepLIF

WINDOW_STEPS = 32  # steps per layer call: bounds the accumulators and event lists (memory ∝ steps × neurons)
INT8_LIMIT = 2**7 - 1
INT16_LIMIT = 2**15 - 1
INT32_LIMIT = 2**31 - 1
SUM_LIMITS = {"int8": INT8_LIMIT, "int16": INT16_LIMIT, "int32": INT32_LIMIT}  # integer sums' type → their bound
FLOAT64_EXACT = 2**53
FRAME_COUNT_LIMIT = 1 << 10  # frames of integer counts up to this run the first layer from events
CODE_LIMIT = 1 << 10  # largest integer weight code accepted for the integer accumulators
FOLD_LIMIT = 4  # inputs valued up to this (a 2×2 pool's counts) add pre-scaled weight rows (`folded`)
SCATTER_CHANNELS = 4  # convs of this few input channels (frame-fed: polarities) scatter (`event_kernels.conv_scatter`)
LOOKUP_BITS = 8  # ... or, fed by events of value 1 with kernel rows of ≤ this many inputs, look up (`conv_lookup`)
SCATTER_EVENT_COST = 4.0  # a scattered event costs about this many kernel-row look-ups, plus one per tap (measured:
# docs/latency.md)
SPARE_EVENTS = 16  # event-list slots past the last event: the table LIF and pooling store 16 lanes at once
# (`event_kernels._append`)
_NO_SPIKES = np.zeros((0, 0), dtype=np.uint8)
_NO_VALUES = np.zeros(0, dtype=np.int32)
_NO_CELLS = np.zeros(0, dtype=np.int32)  # the `cell_of` of a LIF layer that does not pool


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
    """An event-fed layer's weights, [F_in, F_out] or [k·k·C_in, C_out] (rows (ky·k + kx)·C_in + c), 64-byte
    aligned, its accumulator's type, and its per-output gain and offset."""

    values: np.ndarray  # integer codes (int8 where they fit, else the accumulator's type), or float64 weights
    accumulator: type  # int8, int16 or int32 (integer codes: exact sums), or float64 (also codes beyond int32)
    gain: np.ndarray  # float64 [C_out]
    offset: np.ndarray  # float64 [C_out]
    fold: int = 0  # > 0: `values` holds the weights times 1, 2, … (`folded`), this many elements apart


@dataclass
class _Events:
    """Step-major events: step t's are (pos, chan)[starts[t]:starts[t + 1]], with `values` where `has_values`."""

    starts: np.ndarray  # int64 [T + 1]
    pos: np.ndarray  # int32: position y·W + x of the map (0 for a vector)
    chan: np.ndarray  # int32: channel (a vector's feature)
    values: np.ndarray = field(default_factory=lambda: _NO_VALUES)  # int32, beside pos/chan
    has_values: bool = False

    @classmethod
    def buffers(cls, owner: EventEngine, key: tuple, steps: int, capacity: int, values: bool = False) -> _Events:
        """Event lists for `steps` steps of up to `capacity` events each, kept by `owner` between runs."""
        size = steps * capacity + SPARE_EVENTS
        return cls(owner._buffer(("starts", *key), (steps + 1,), np.int64),
                   owner._buffer(("pos", *key), (size,), np.int32), owner._buffer(("chan", *key), (size,), np.int32),
                   owner._buffer(("values", *key), (size,), np.int32) if values else _NO_VALUES, values)


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

    def state_type(self, dtype: type, table: np.ndarray | None = None) -> type:
        """The membranes' type: stored levels (the table's type on the table path, else int32) on the integer path,
        else the model's float type."""
        return table.dtype.type if table is not None else np.int32 if self.integer else dtype

    def table(self, weights: _Weights) -> np.ndarray | None:
        """Threshold tables (`lif_tables`) for the integer accumulator of `weights`, where they apply: an integer
        membrane with at most `MAX_TABLE_LEVELS` levels fed by int8 / int16 / int32 sums."""
        dtype = np.dtype(weights.accumulator)
        if not self.integer or dtype.name not in SUM_LIMITS or self.high - self.low + 1 > MAX_TABLE_LEVELS:
            return None
        return aligned(lif_table(weights.gain, weights.offset, self.frac, self.shift, int(self.threshold) << self.frac,
                                 int(self.low), int(self.high), self.zero_reset, SUM_LIMITS[dtype.name], dtype.type))

    def run(self, acc: np.ndarray, gain: np.ndarray, offset: np.ndarray, table: np.ndarray | None,
            state: np.ndarray, spikes: np.ndarray | None, events: _Events, pool: tuple[np.ndarray, np.ndarray]
            ) -> int:
        """Update `state` over acc [T, P, C]; write the step-major events (returned: how many) or, for a layer that
        pools, its spike counts into the pool's grid (`pool` = (cell_of, grid), else two empty arrays:
        `event_kernels.pool_grid`), and, if given, spikes [T, P·C]."""
        record = spikes is not None
        spikes = spikes if record else _NO_SPIKES
        if table is not None:
            return kernels.lif_table(acc, table, int(self.low), int(self.high - self.low) + 1, self.zero_reset,
                                     reset_level(self.frac, int(self.low), int(self.high)), state, record, spikes,
                                     events.starts, events.pos, events.chan, *pool)
        if self.integer:
            return kernels.lif_integer(acc, gain, offset, self.frac, self.shift, int(self.threshold) << self.frac,
                                       int(self.low), int(self.high), self.zero_reset, state, record, spikes,
                                       events.starts, events.pos, events.chan, *pool)
        dtype = state.dtype.type
        return kernels.lif_float(acc, gain, offset, dtype(self.beta), dtype(self.threshold), self.quantized,
                                 dtype(self.low), dtype(self.high), self.zero_reset, state, record, spikes,
                                 events.starts, events.pos, events.chan, *pool)


def _updater(lif: _Lif, window: int, gain: np.ndarray, offset: np.ndarray, table: np.ndarray | None,
             state: np.ndarray, events: _Events, pool: tuple[np.ndarray, np.ndarray]
             ) -> Callable[[np.ndarray, np.ndarray | None], int]:
    """`lif.run` with everything but the accumulator [window, H, W, C] and the spikes to record bound."""
    def update(acc: np.ndarray, spikes: np.ndarray | None) -> int:
        return lif.run(acc.reshape(window, -1, acc.shape[3]), gain, offset, table, state, spikes, events, pool)
    return update


@dataclass
class _Stage:
    """A weight layer, its LIF layer and the pool after it, for windows of one length: every buffer and kernel
    argument bound once (`EventEngine._build_plan`), so that running it is a few calls."""

    name: str  # conv{i} / fc{i}
    shape: tuple[int, ...]  # the LIF layer's map: (H, W, C) or (N,)
    state: np.ndarray  # its membranes [P, C], kept between windows
    update: Callable[[np.ndarray, np.ndarray | None], int]  # (acc, spikes to record or None) → spikes (`_Lif.run`)
    acc: np.ndarray | None  # the accumulator `accumulate` fills; None with it: currents from torch (`_first_layer`)
    accumulate: Callable[[], int] | None  # sums the input events into acc; returns the SynOps
    pool: Callable[[], None] | None = None  # the pool's events from the counts the LIF layer left (`pool_grid`)


@dataclass
class _Plan:
    """A sample window's stages, its readout (acc [window, classes] → accumulates) and, when the first layer runs
    from events, the event lists `_frame_events` fills for it."""

    stages: list[_Stage]
    readout: Callable[[np.ndarray], int]
    frames: _Events | None


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
    w = (w.permute(2, 3, 1, 0) if w.dim() == 4 else w.t()).contiguous()  # [(k, k,) in, out]
    magnitudes = w[w != 0].abs()
    step = float(magnitudes.min()) if magnitudes.numel() else 1.0
    codes = torch.round(w / step)
    worst = float(codes.abs().amax(dim=-1).sum(dim=tuple(range(w.dim() - 1))).max()) * max_value if w.numel() else 0
    if w.numel() and torch.equal(codes * step, w) and float(codes.abs().max()) <= CODE_LIMIT and worst <= FLOAT64_EXACT:
        narrow = worst <= INT8_LIMIT and w.shape[-1] % lanes(np.int8) == 0  # only whole 64-lane vectors of outputs
        values = codes.numpy().astype(np.int8 if narrow else np.int16 if worst <= INT16_LIMIT
                                      else np.int32 if worst <= INT32_LIMIT else np.float64)
    else:
        values, step = w.numpy(), 1.0
    gain, offset = _fold_bn(name, bn, weight.shape[0], bias, step * input_scale)
    if values.dtype.kind == "i":  # x = acc·gain + offset = (−acc)·(−gain) + offset: gains ≥ 0 (`lif_tables`)
        values = values * np.where(gain < 0, -1, 1).astype(values.dtype)
        gain = np.abs(gain)
    rows, fold = folded(values.reshape(-1, values.shape[-1]), max_value)
    accumulator = rows.dtype.type
    if rows.dtype.kind == "i" and rows.size and int(np.abs(rows).max()) <= INT8_LIMIT:
        rows = aligned(rows.astype(np.int8))  # half the bytes to stream; sign-extended as they load
    return _Weights(rows, accumulator, gain, offset, fold)


def folded(rows: np.ndarray, max_value: int) -> tuple[np.ndarray, int]:
    """Weight rows [R, C] for inputs of integer values 1 … max_value (64-byte aligned), and the elements between
    copies: up to `FOLD_LIMIT`, the rows times 1, 2, … max_value one after another, so that an input of value v
    adds its row of copy v instead of multiplying (fold R·C); beyond, the rows alone (fold 0: multiply)."""
    if max_value <= 1 or max_value > FOLD_LIMIT:
        return aligned(rows), 0
    return aligned(np.concatenate([rows * rows.dtype.type(v) for v in range(1, max_value + 1)])), rows.size


@functools.cache
def _taps(size: int, out_size: int, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Per input row (or column) of a conv: the first kernel row reaching an output, how many do, and the output
    row that first one reaches, [size, 3] (`_scatter_taps`)."""
    taps = np.zeros((size, 3), dtype=np.int64)
    for y in range(size):
        reaching = [k for k in range(kernel) if (y + pad - k) % stride == 0 and 0 <= (y + pad - k) // stride < out_size]
        taps[y] = (reaching[0], len(reaching), (y + pad - reaching[0]) // stride) if reaching else (0, 0, 0)
    return taps


def _scatter_taps(rows: np.ndarray, columns: np.ndarray, kernel: int, channels: int, channels_out: int,
                  out_width: int) -> np.ndarray:
    """`event_kernels.conv_scatter`'s table [P, 4] from the `_taps` of each position's row and column: kernel rows
    and columns reaching an output, the first tap's weight offset and its output's acc offset."""
    return np.stack([rows[:, 1], columns[:, 1], (rows[:, 0] * kernel + columns[:, 0]) * channels * channels_out,
                     (rows[:, 2] * out_width + columns[:, 2]) * channels_out], axis=1)


def _lookup_table(values: np.ndarray, accumulator: type, kernel: int, channels: int) -> np.ndarray:
    """`event_kernels.conv_lookup`'s table [k, 2^(k·C_in), C_out] from integer weight rows [k·k·C_in, C_out]: for
    kernel row ky and each pattern of its k·C_in inputs (bit kx·C_in + c), the sum of their weight rows, in the
    accumulator's type (a partial sum of a sum that fits it)."""
    span = kernel * channels
    pattern_bits = (np.arange(1 << span)[:, None] >> np.arange(span)) & 1  # [patterns, k·C_in]
    rows = values.reshape(kernel, span, values.shape[1]).astype(np.int64)
    return aligned(np.einsum("pb,kbo->kpo", pattern_bits, rows).astype(accumulator))


def largest_count(flat: np.ndarray) -> float | None:
    """The largest value of a flat float array whose values are all whole numbers without a sign bit (counts;
    −0 is refused), else None (`event_kernels.count_range`)."""
    bits = f"i{flat.itemsize}"
    low, high, whole = kernels.count_range(flat, flat.view(bits))
    return float(np.array(high, dtype=bits).view(flat.dtype)) if whole and low >= 0 else None


def frame_counts(flat: np.ndarray) -> tuple[float, float] | None:
    """(scale, largest count) when a flat float array holds counts / scale: whole numbers ≥ 0 (scale 1, an event
    camera's frames), or counts normalized by a whole number (`data.frame_clip`: count / clip, divided in the
    array's type), the scale read from the smallest positive value; else None."""
    high = largest_count(flat)
    if high is not None:
        return 1.0, high
    scale = round(1.0 / float(kernels.smallest_positive(flat)))
    if not 1 < scale <= FRAME_COUNT_LIMIT:
        return None
    high = kernels.count_scale(flat, float(scale))
    return (float(scale), float(high)) if high >= 0 else None


def aligned(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `array` whose data starts on a 64-byte boundary (one cache line, one vector)."""
    raw = np.empty(array.nbytes + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


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
        self.tables: dict[int, np.ndarray | None] = {1: None}
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
                self.tables[i] = self.lifs[i - 1].table(self.layers[i])
        self.readout = model.fc
        self.readout_bias = model.fc.bias.detach().double().numpy() if model.fc.bias is not None else 0.0
        self.readout_scale = 1.0 / self.pools[self.depth] ** 2 if self.depth in self.pools else 1.0  # pooled counts
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
            self._buffers, self._plans = {}, {}  # a pooling grid may be left nonzero
            raise

    def _run(self, frames: torch.Tensor, record_spikes: bool) -> EventResult:
        steps, batch = frames.shape[:2]
        layer_ns: dict[str, float] = {}
        synops: dict[str, float] = {}
        start = time.perf_counter_ns()
        first = "conv1" if self.conv else "fc1"
        by_events = self._first_by_events(frames)
        currents = None if by_events else self._first_layer(frames)  # [B, T, H, W, C] / [B, T, 1, 1, N]
        macs = {} if by_events else {first: float(self._first_macs(frames.shape[2:])) * steps * batch}
        _timed(layer_ns, first, start)
        model_type = torch.empty(0, dtype=frames.dtype).numpy().dtype.type
        logits, spikes = [], []
        for b in range(batch):
            sample = (None, frames[:, b]) if by_events else (currents[b], None)
            sample_logits, sample_spikes = self._sample(*sample, model_type, layer_ns, synops, record_spikes)
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

    def _first_by_events(self, frames: torch.Tensor) -> bool:
        """Whether the frame-fed layer runs from events on these frames, and its weights and table if so.

        It does when the frames are counts (integers 0…FRAME_COUNT_LIMIT: event-camera frames, binary or not), or
        such counts divided by a whole number (the data's normalization by `frame_clip`, `frame_counts`; the
        division goes into the layer's gain, as a pool's 1/k² does), and the layer's weights are integer multiples
        of one step, so that its sums are exact integers like every other layer's; otherwise it runs densely with
        torch, bit-identical to the dense path."""
        self.layers.pop(1, None)
        self.tables[1] = None
        if frames.numel() == 0 or not self._first_integer:  # (float weights: no need to read the frames)
            return False
        counts = frame_counts(frames.numpy().reshape(-1))
        if counts is None or counts[1] > FRAME_COUNT_LIMIT:
            return False
        self._scale, high = counts
        self._counted = high > 1  # whether the frame events carry counts (values) or are all 1
        bound = 1 << max(0, math.ceil(math.log2(max(high, 1.0))))  # the largest count the weights are built for
        first = self._first_weights(bound, self._scale)
        if first is None:
            return False
        self.layers[1], self.tables[1] = first
        return True

    @property
    def _first_integer(self) -> bool:
        """Whether the frame-fed layer's weights are integer codes for inputs of value 1 (else it runs densely)."""
        return self._first_weights(1, 1.0) is not None

    def _first_weights(self, bound: int, scale: float) -> tuple[_Weights, np.ndarray | None] | None:
        """The frame-fed layer's event weights and LIF table for counts up to `bound` of frames counts / `scale`,
        None when its weights are not integer codes for them (cached)."""
        cache = self.__dict__.setdefault("_first_weights_cache", {})
        if (bound, scale) not in cache:
            weights = _weights("conv1" if self.conv else "fc1", self.first_weight, self.first.bias, self.first_bn,
                               1.0 / scale, bound)
            cache[bound, scale] = (weights, self.lifs[0].table(weights)) if weights.values.dtype.kind == "i" else None
        return cache[bound, scale]

    def _frame_events(self, frames: torch.Tensor, t0: int, window: int, events: _Events) -> None:
        """Steps t0 … t0 + window of one sample's count frames [T, C, H, W] (counts / `_scale`) as events (position,
        channel, count) in `events`: positions y·W + x for a conv, one vector (position 0, feature = flat C·H·W
        index) for an MLP."""
        x = frames[t0:t0 + window]
        x = (x.reshape(window, x.shape[1], -1) if self.conv else x.reshape(window, -1, 1)).contiguous().numpy()
        by_position = not self._scatters(x.shape[1])  # x: [T, C, P]; `conv_scatter` takes any order
        kernels.frame_events(x, x.view(f"i{x.itemsize}"), self._scale, events.has_values, by_position, events.starts,
                             events.pos, events.chan, events.values)

    def _scatters(self, channels: int) -> bool:
        """Whether a layer fed by `channels` input channels scatters (`event_kernels.conv_scatter`: a conv of at most
        `SCATTER_CHANNELS`, the frame-fed layer of polarities) instead of gathering."""
        return self.conv and channels <= SCATTER_CHANNELS

    @staticmethod
    def _looks_up(weights: _Weights, kernel: int, channels: int, events: _Events) -> bool:
        """Whether a scattering conv (`_scatters`) looks its sums up instead (`event_kernels.conv_lookup`): events of
        value 1, integer sums, kernel rows of at most `LOOKUP_BITS` inputs."""
        return (not events.has_values and np.dtype(weights.accumulator).kind == "i" and weights.fold == 0
                and kernel * channels <= LOOKUP_BITS)

    def _first_macs(self, shape: torch.Size) -> int:
        return dense_macs(self.first, tuple(shape) if self.conv else (math.prod(shape),))

    def _first_layer(self, frames: torch.Tensor) -> np.ndarray:
        """The frame-fed layer's currents for all samples, as the dense model computes them: [B, T, H, W, C]
        (channels-last), or [B, T, 1, 1, N] for an MLP."""
        steps, batch = frames.shape[:2]
        if self.conv:
            current = self.first_bn(self.first._conv_forward(frames.flatten(0, 1), self.first_weight, None))
            return current.unflatten(0, (steps, batch)).permute(1, 0, 3, 4, 2).contiguous().numpy()
        current = self.first_bn(F.linear(frames.flatten(2).flatten(0, 1), self.first_weight, self.first.bias))
        current = current.unflatten(0, (steps, batch)).transpose(0, 1)  # [B, T, N]
        return current.contiguous().view(batch, steps, 1, 1, -1).numpy()

    def _buffer(self, key: tuple, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An array kept between runs (64-byte aligned, zero when made; the pooling grid is left zero again)."""
        buffers = self.__dict__.setdefault("_buffers", {})
        key = (*key, shape, np.dtype(dtype).str)
        if key not in buffers:
            buffers[key] = aligned(np.zeros(shape, dtype=dtype))
        return buffers[key]

    def _sample(self, current: np.ndarray | None, frames: torch.Tensor | None, model_type: type,
                layer_ns: dict[str, float], synops: dict[str, float], record: bool
                ) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[int, ...]]]]:
        """One sample, from the first layer's currents [T, H, W, C] ([T, 1, 1, N] for an MLP) or, when those are
        None, from its count frames [T, C, H, W] (`_first_by_events`): logits [classes] (float64) and, when
        `record`, each LIF layer's spikes [T, N] (uint8) with its map shape; in windows of `WINDOW_STEPS` steps."""
        steps = (current if current is not None else frames).shape[0]
        if current is not None:
            first_shape = tuple(current.shape[1:] if self.conv else current.shape[3:])
        else:
            first_shape = tuple(frames.shape[2:]) + tuple(frames.shape[1:2]) if self.conv else (frames[0].numel(),)
        recorded: list[tuple[np.ndarray, tuple[int, ...]]] = []
        readout = self._buffer(("readout",), (steps, self.readout.out_features), np.float64)
        for t0 in range(0, steps, WINDOW_STEPS):
            window = min(steps - t0, WINDOW_STEPS)
            plan = self._plan(first_shape, window, model_type, current is None)
            if t0 == 0:
                for stage in plan.stages:
                    stage.state.fill(0)  # at rest; a kept buffer, not a fresh one whose pages fault in the first step
                recorded = [(np.empty((steps, math.prod(stage.shape)), dtype=np.uint8), stage.shape)
                            for stage in plan.stages] if record else []
            for index, stage in enumerate(plan.stages):
                begin = time.perf_counter_ns()
                if stage.accumulate is None:  # currents computed densely (`_first_layer`)
                    acc = np.ascontiguousarray(current[t0:t0 + window])
                else:
                    if index == 0:
                        self._frame_events(frames, t0, window, plan.frames)
                    synops[stage.name] = synops.get(stage.name, 0.0) + stage.accumulate()
                    acc = stage.acc
                    begin = _timed(layer_ns, stage.name, begin)
                fired = stage.update(acc, recorded[index][0][t0:t0 + window] if record else None)
                begin = _timed(layer_ns, f"lif{index + 1}", begin)
                if stage.pool is not None:
                    stage.pool()
                    name = f"pool{index + 1}"
                    synops[name] = synops.get(name, 0.0) + fired  # one accumulate per spike pooled
                    _timed(layer_ns, name, begin)
            begin = time.perf_counter_ns()
            synops["fc"] = synops.get("fc", 0.0) + plan.readout(readout[t0:t0 + window])
            _timed(layer_ns, "fc", begin)
        begin = time.perf_counter_ns()
        logits = readout.mean(axis=0) * self.readout_scale + self.readout_bias  # mean_t fc(s_t)
        _timed(layer_ns, "fc", begin)
        return logits, recorded

    def _plan(self, first_shape: tuple[int, ...], window: int, model_type: type, by_events: bool) -> _Plan:
        """The stages for windows of `window` steps from a first-layer input of `first_shape` (`_build_plan`), kept
        per input shape, window, model type and first-layer weights (they follow the frames' largest count)."""
        first = (id(self.layers[1]), self._counted) if by_events else None
        key = (first_shape, window, model_type, first)
        plans = self.__dict__.setdefault("_plans", {})
        if key not in plans:
            plans[key] = self._build_plan(first_shape, window, model_type, by_events)
        return plans[key]

    def _build_plan(self, first_shape: tuple[int, ...], window: int, model_type: type, by_events: bool) -> _Plan:
        """Every layer's buffers and kernel calls, bound once: what a window of a sample runs (`_sample`)."""
        frames = None
        if by_events:
            frames = _Events.buffers(self, ("frames",), window, math.prod(first_shape), values=True)
            frames.has_values = self._counted  # counts above 1 ride along as values
        events, shape, stages = frames, first_shape, []
        for i in range(1, self.depth + 1):
            lif, table = self.lifs[i - 1], self.tables[i]
            if i == 1 and not by_events:
                acc, accumulate = None, None
                gain, offset = np.ones(shape[-1]), np.zeros(shape[-1])
            else:
                acc, shape, accumulate = self._accumulator(i, events, shape, window)
                gain, offset = self.layers[i].gain, self.layers[i].offset
            state = self._buffer(("state", i), (math.prod(shape[:-1]), shape[-1]), lif.state_type(model_type, table))
            out = _Events.buffers(self, ("lif", i), window, 0 if i in self.pools else math.prod(shape))
            pool = self._pool_grid(i, shape, window)
            stage = _Stage(f"{'conv' if self.conv else 'fc'}{i}", shape, state, _updater(
                lif, window, gain, offset, table, state, out, pool), acc, accumulate)
            if i in self.pools:
                shape = self._pooled_shape(i, shape)
                out = _Events.buffers(self, ("pool", i), window, math.prod(shape), values=True)
                stage.pool = functools.partial(kernels.pool_grid, pool[1], shape[2], out.starts, out.pos, out.chan,
                                               out.values)
            stages.append(stage)
            events = out
        weight, fold = self._readout_weight(shape)
        rows = self._buffer(("rows", "fc"), (math.prod(shape),), np.int64)
        head = (events.starts, events.pos, events.chan, events.values, events.has_values, fold, shape[-1], weight)
        return _Plan(stages, lambda acc: kernels.linear_gather(*head, acc, rows), frames)

    def _accumulator(self, i: int, events: _Events, shape: tuple[int, ...], window: int
                     ) -> tuple[np.ndarray, tuple[int, ...], Callable[[], int]]:
        """Layer i's accumulator [window, H_out, W_out, C_out] ([window, 1, 1, F_out] when linear), the output map's
        shape, and the kernel call that fills it from the events of its input map `shape` (returning the SynOps)."""
        weights = self.layers[i]
        head = (events.starts, events.pos, events.chan, events.values, events.has_values, weights.fold)
        if not self.conv:
            features = weights.values.shape[1]
            acc = self._buffer(("acc", i), (window, 1, 1, features), weights.accumulator)
            rows = self._buffer(("rows", i), (math.prod(shape),), np.int64)
            return acc, (features,), functools.partial(kernels.linear_gather, *head, shape[-1], weights.values,
                                                       acc.reshape(window, features), rows)
        layer = getattr(self.model, f"conv{i}")
        stride, pad, k = layer.stride[0], layer.padding[0], layer.kernel_size[0]
        height, width, channels = shape
        out_h, out_w = (height + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
        channels_out = weights.values.shape[1]
        acc = self._buffer(("acc", i), (window, out_h, out_w, channels_out), weights.accumulator)
        if self._scatters(channels):  # (`_frame_events` orders the events for it)
            rows, columns = _taps(height, out_h, k, stride, pad), _taps(width, out_w, k, stride, pad)
            taps = self._position_table(("taps", i), height, width, lambda y, x: _scatter_taps(
                rows[y], columns[x], k, channels, channels_out, out_w))
            scatter = functools.partial(kernels.conv_scatter, *head, channels, k, stride, weights.values, acc, taps)
            if not self._looks_up(weights, k, channels, events):
                return acc, (out_h, out_w, channels_out), scatter
            line = (width + 2 * pad) * channels + 8  # + 8: a pattern is read as one 8-byte word
            byte_of = self._position_table(("line", i), height, width, lambda y, x: y * line + (x + pad) * channels)
            lookup = functools.partial(  # each position reaches the outputs of its scatter taps (the SynOps)
                kernels.conv_lookup, events.starts, events.pos, events.chan, height, channels, k, stride, pad, byte_of,
                taps[:, 0] * taps[:, 1], _lookup_table(weights.values, weights.accumulator, k, channels),
                acc, self._buffer(("lines", i), (height, line), np.uint8))
            # the cheaper of the two: look-up work ∝ output neurons × kernel rows, scatter work ∝ events (× taps)
            break_even = window * out_h * out_w * k / (SCATTER_EVENT_COST + (k / stride) ** 2)
            return acc, (out_h, out_w, channels_out), lambda: (
                lookup() if events.starts[window] >= break_even else scatter())
        key_of = self._position_table(("key", i), height, width, lambda y, x: (y * k + x) * channels * channels_out)
        return acc, (out_h, out_w, channels_out), functools.partial(
            kernels.conv_gather, *head, height, width, channels, k, stride, pad, weights.values, acc, key_of,
            self._buffer(("first", i), (height * width + 1,), np.int64),
            self._buffer(("key", i), (height * width * channels + SPARE_EVENTS,), np.int64),
            self._buffer(("value", i), (height * width * channels + SPARE_EVENTS,), np.int32),
            self._buffer(("band", i), (k * width * channels + SPARE_EVENTS,), np.int64),
            self._buffer(("band_value", i), (k * width * channels + SPARE_EVENTS,), np.int32),
            self._buffer(("band_first", i), (width + 1,), np.int64))

    def _position_table(self, key: tuple, height: int, width: int,
                        build: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """build(y, x) over the positions p = y·W + x of an H × W map [H·W], made once per key and map size: what a
        kernel needs of a position, looked up instead of divided out per event."""
        tables = self.__dict__.setdefault("_tables", {})
        if (*key, height, width) not in tables:
            y, x = np.divmod(np.arange(height * width, dtype=np.int64), width)
            tables[*key, height, width] = build(y, x)
        return tables[*key, height, width]

    def _count_type(self, i: int) -> type:
        """The type of LIF layer i's pool counts: the accumulator's on the table path (one vector add per vector of
        neurons), else int32."""
        return self.tables[i].dtype.type if self.tables[i] is not None else np.int32

    def _pooled_shape(self, i: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The map shape after pool i of LIF layer i's map `shape` (H, W, C)."""
        size = self.pools[i]
        return shape[0] // size, shape[1] // size, shape[2]

    def _pool_grid(self, i: int, shape: tuple[int, ...], window: int) -> tuple[np.ndarray, np.ndarray]:
        """(cell_of, grid) of pool i for its LIF layer's map `shape`: each position's window (−1: none) and the
        zeroed counts [window, windows·C]; two empty arrays when layer i does not pool."""
        if i not in self.pools:
            return _NO_CELLS, self._buffer(("grid", i), (0, 1), self._count_type(i))
        size = self.pools[i]
        out_h, out_w, channels = self._pooled_shape(i, shape)
        cell_of = self._position_table(("cell", i), shape[0], shape[1], lambda y, x: np.where(
            (y // size < out_h) & (x // size < out_w), (y // size) * out_w + x // size, -1).astype(np.int32))
        return cell_of, self._buffer(("grid", i), (window, out_h * out_w * channels), self._count_type(i))

    def _readout_weight(self, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
        """The readout's weight [F_in, classes] in float64, its inputs in channels-last order, `folded` for the
        last pool's counts (cached by shape)."""
        cache = self.__dict__.setdefault("_readout_cache", {})
        if shape not in cache:
            w = self.readout.weight.detach().double()
            if len(shape) == 3:
                height, width, channels = shape
                w = w.view(-1, channels, height, width).permute(2, 3, 1, 0)
            else:
                w = w.t()
            cache[shape] = folded(w.reshape(-1, w.shape[-1]).contiguous().numpy(), self.pools.get(self.depth, 1) ** 2)
        return cache[shape]
