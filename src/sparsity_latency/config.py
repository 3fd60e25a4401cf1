"""Typed experiment configuration: defaults, TOML loading, `--set key=value` overrides, validation.

A config file has one table per section below (`[data]`, `[model]`, …); every key is optional and
falls back to the default written here. `docs/config.md` lists every key with its meaning.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsity_latency.errors import InputError


@dataclass(frozen=True)
class StudyConfig:
    """The grid a study runs: seeds × variants × training methods."""

    name: str = "study"
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ("standard", "pgd-at")
    # Each variant is a partial config (nested tables or dotted keys) laid over the base config.
    variants: tuple[dict, ...] = ({},)


@dataclass(frozen=True)
class DataConfig:
    """Dataset, its size, and how events become frames; simulator parameters for synthetic data."""

    name: str = "synthetic-digits"  # a dataset, or two joined by "+" (multimodal; "X+frames": X's intensity frames)
    root: str = ""  # folder holding tonic's <ClassName>/ folders of the real datasets
    download: bool = False  # let tonic download a real dataset that is not under `root`
    train_samples: int = 256  # 0 = every sample of the split
    test_samples: int = 128
    test_fraction: float = 0.2  # share held out (stratified, seeded) for datasets without a test split
    time_steps: int = 8
    duration_us: float = 0.0  # windows span this from t = 0; 0 = the dataset's own (or each sample's span)
    downsample: int = 1  # spatial factor: x // f, y // f; the sensor size shrinks to ceil(size / f)
    denoise_us: float = 0.0  # drop events with no neighbour event within this time (tonic's Denoise); 0 = off
    frame_clip: float = 3.0  # events per pixel and bin that map to input value 1.0
    cache: bool = True  # keep framed data on disk, keyed by the dataset and every parameter here
    cache_dir: str = ""  # "" = $SPARSITY_LATENCY_CACHE or ~/.cache/sparsity-latency
    contrast_threshold: float = 0.2  # ESIM log-intensity threshold C (mean over pixels)
    threshold_sigma: float = 0.03  # per-pixel spread of C (v2e: N(0.2, 0.03))
    refractory_us: float = 0.0  # a pixel's dead time after each event (signal, leak and noise)
    render_dt_us: float = 5000.0  # rendering step of the moving image; events are interpolated between
    background: float = 0.4  # intensity of the screen behind the digit, in [0, 1) (docs/simulator.md)
    leak_rate_hz: float = 0.1  # leak ON events per pixel and second (v2e)
    shot_noise_hz: float = 1.0  # Poisson noise events (ON + OFF) per pixel and second (v2e)
    aps_interval_us: float = 20000.0  # intensity (APS) frame interval of the simulated DAVIS (50 fps)


@dataclass(frozen=True)
class ModelConfig:
    """Network, its quantized-membrane LIF neurons, weight precision and channel gating."""

    name: str = "tiny-conv"
    channels: tuple[int, ...] = ()  # () = the network's own default (see docs/config.md)
    neuron: str = "spquant"  # "spquant" (fused multi-step), "spquant-loop" (step by step), "snntorch" (its Leaky)
    membrane_bits: float = 1.58  # 1.58 = ternary {-1, 0, 1}; >= 32 = full precision
    beta: float = 0.5  # membrane leak; 2^-k is a right shift by k (SpQuant: 1/2)
    threshold: float = 1.0  # in membrane grid units
    reset: str = "zero"  # "zero" (hard reset, SpQuant) or "subtract"
    detach_reset: bool = True  # reset without the spike's gradient (snntorch); SpQuant's code keeps it
    surrogate: str = "triangle"
    surrogate_param: float = 0.0  # 0 = the surrogate's default (triangle γ 1, atan α 2, fast-sigmoid k 25, rectangle 1)
    quant_grad: str = "stacked-sigmoid"  # membrane quantizer backward: "stacked-sigmoid" (SpQuant) or "ste"
    weight_bits: float = 32.0  # 2 = ternary; 3-8 = k-bit; >= 32 = full precision
    weight_quant: str = "sawb"  # k-bit rule for 3-8 bits: "sawb" (4 and 8 bits) or "uniform"
    gating: bool = False  # SpQuant's per-sample, per-step channel gate in front of each conv layer's LIF
    gate_mass: float = 0.85  # share of the activation mass the gate is taught to keep
    gate_loss_weight: float = 1.0  # weight of the gate's supervision loss in training
    fusion: str = "late"  # two modalities: "early" (concatenate inputs), "late" (mean of logits), "attention"


@dataclass(frozen=True)
class TrainConfig:
    """Training method and its hyper-parameters; τ of the small-gradient sparsity measure."""

    method: str = "standard"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    eps: float = 0.03  # adversarial training budget (L∞, input range [0, 1])
    pgd_steps: int = 3  # PGD steps of pgd-at, pgd-at+grad-reg and of trades' inner maximization
    pgd_step_size: float = 0.0  # 0 means 2.5 · eps / pgd_steps (Madry et al.)
    fgsm_step_size: float = 0.0  # fgsm-at's step from its random start; 0 means 1.25 · eps (Wong et al.)
    trades_beta: float = 6.0  # weight of trades' KL term (Zhang et al.: 1/λ, 6 on CIFAR-10)
    grad_reg_h: float = 0.01  # finite-difference step of grad-reg (Liu et al. 2024)
    grad_reg_lambda: float = 0.01  # weight of grad-reg's penalty (docs/attacks.md: 0.1 stalls learning here)
    grad_tau: float = 0.01  # |g| <= tau · max|g| counts as a small gradient


STANDARD = "standard"  # the training method adversarial runs are compared with

# The training settings each method reads besides those every method shares (epochs, batch_size, lr, grad_tau).
# A run's identity leaves out the ones its method does not read, so that a standard run is shared by
# adversarial variants that differ only in them (docs/schema.md, "Run identity").
METHOD_SETTINGS: dict[str, tuple[str, ...]] = {
    STANDARD: (),
    "pgd-at": ("eps", "pgd_steps", "pgd_step_size"),
    "fgsm-at": ("eps", "fgsm_step_size"),
    "trades": ("eps", "pgd_steps", "pgd_step_size", "trades_beta"),
    "grad-reg": ("grad_reg_h", "grad_reg_lambda"),
    "pgd-at+grad-reg": ("eps", "pgd_steps", "pgd_step_size", "grad_reg_h", "grad_reg_lambda"),
}


@dataclass(frozen=True)
class AttackConfig:
    """Robustness evaluation on the test set: attacks × budgets, and the gradient-masking checks."""

    attacks: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce", "rga", "surrogate-swap")
    eps: tuple[float, ...] = (0.01, 0.03, 0.1)  # L∞ radii (input range [0, 1]) of the linf attacks
    l2_eps: tuple[float, ...] = (0.5, 2.0)  # L2 radii of pgd-l2 (per sample, over all T·C·H·W inputs)
    flip_budgets: tuple[int, ...] = (25, 100)  # events flipped per sample by event-flip
    pgd_steps: int = 10  # steps of pgd, pgd-l2, rga and surrogate-swap
    pgd_step_size: float = 0.0  # 0 means 2.5 · eps / pgd_steps
    restarts: int = 1  # random restarts of pgd, pgd-l2, rga, surrogate-swap and apgd-ce
    apgd_steps: int = 20  # iterations of apgd-ce (its step size adapts; Croce & Hein use 100)
    swap_surrogate: str = "atan"  # surrogate-swap attacks through this surrogate …
    swap_param: float = 0.0  # … with this parameter (0 = its default); smoother than the model's
    flip_steps: int = 5  # event-flip spends its budget over this many gradient evaluations
    checks: bool = True  # run the gradient-masking checks (docs/attacks.md)
    check_steps_factor: int = 4  # PGD is rerun with this many times the steps …
    check_restarts: int = 3  # … and with this many restarts; robust accuracy must not rise
    check_eps: float = 1.0  # L∞ radius at which PGD must bring accuracy down to chance
    check_tolerance: float = 0.02  # accuracy a check lets pass before it fails
    batch_size: int = 64
    samples: int = 0  # 0 means the whole test set


@dataclass(frozen=True)
class ProfileConfig:
    """Wall-clock measurement and the energy model's coefficients."""

    backends: tuple[str, ...] = ("dense", "event")  # "dense" torch forward, "event"-driven engine (docs/latency.md)
    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = 3
    repeats: int = 15  # timed passes at least …
    max_repeats: int = 200  # … and at most, until the median moves by less than stable_tolerance between rounds
    stable_tolerance: float = 0.02  # relative change of the median that counts as stable
    exit_thresholds: tuple[float, ...] = (0.5, 0.7, 0.9, 0.99)  # early exit: confidence needed to decide
    threads: int = 1
    samples: int = 64  # test samples over which operation counts are averaged
    ac_pj: float = 0.9  # energy per accumulate, 45 nm (Horowitz 2014)
    mac_pj: float = 4.6  # energy per multiply-accumulate, 45 nm (Horowitz 2014)
    memory_pj_per_bit: float = 0.15625  # 10 pJ per 64-bit read of an 8 kB SRAM, 45 nm (Horowitz 2014)


@dataclass(frozen=True)
class CorrelateConfig:
    """Which evaluation gives `correlate` its gradient sparsity and time steps, and how it draws its intervals."""

    attack: str = "pgd"
    eps: float = 0.03
    exit_threshold: float = 0.9  # early-exit threshold whose decision_time_steps is the time-step latency
    bootstrap_resamples: int = 1000  # resamples of the 95 % percentile intervals
    permutations: int = 1000  # label permutations of the Spearman group-difference test
    seed: int = 0  # seed of the resamples and permutations


@dataclass(frozen=True)
class SlurmConfig:
    """Resources of each run's job under `study --executor slurm` (submitit's SLURM executor)."""

    partition: str = ""  # "" = the cluster's default partition
    time_min: int = 240  # wall-clock limit of one run's job; a job near its limit is checkpointed and requeued
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    array_parallelism: int = 64  # runs of the job array running at once
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load …, source venv/bin/activate)


@dataclass(frozen=True)
class Config:
    """Everything one run or one study needs."""

    seed: int = 0
    study: StudyConfig = field(default_factory=StudyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    correlate: CorrelateConfig = field(default_factory=CorrelateConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML config, apply `key=value` overrides, validate; raise InputError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed TOML: {exc}") from None
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    raw.setdefault("study", {}).setdefault("name", path.stem)
    return config_from_dict(raw)


def config_from_dict(raw: dict) -> Config:
    """Build and validate a Config from nested plain data (as read from TOML or run.json)."""
    config = _build(Config, raw, "")
    check_config(config)
    return config


def config_to_dict(config: Any) -> dict:
    """Nested plain data (lists, not tuples) of a Config or one of its sections.

    `config_from_dict` reads a whole Config's data back to the same Config.
    """
    return _plain(dataclasses.asdict(config))


def with_changes(config: Config, changes: dict) -> Config:
    """A copy of `config` with a partial config (nested or dotted keys) laid over it, validated."""
    raw = config_to_dict(config)
    for key, value in flatten(changes).items():
        set_dotted(raw, key, value)
    return config_from_dict(raw)


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` → ("a.b", value); value read as a TOML value, or as a bare string if it is not one."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"override must look like key=value, got '{item}'")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return key, value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set `raw["a"]["b"] = value` for key "a.b", creating tables on the way."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"config key '{key}': '{part}' is not a table")
        node = child
    node[leaf] = value


def flatten(nested: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c.d": 2} → {"a.b": 1, "c.d": 2}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(f"config '{where.rstrip('.') or 'root'}' must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint_text = f" (did you mean '{where}{close[0]}'?)" if close else ""
            raise InputError(f"unknown config key '{where}{key}'{hint_text}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{where}{key}.")
        else:
            values[key] = _coerce(value, hint, f"{where}{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"config '{name}' must be a list, got {value!r}")
        (item_hint, _) = typing.get_args(hint)
        return tuple(_coerce(v, item_hint, f"{name}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        return _coerce(value, next(a for a in typing.get_args(hint) if a is not type(None)), name)
    if hint is dict:
        if not isinstance(value, dict):
            raise InputError(f"config '{name}' must be a table, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"config '{name}' must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InputError(f"config '{name}' must be a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config '{name}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"config '{name}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"config '{name}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {name}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def check_config(config: Config) -> None:
    """Check values and names against the registries; raise InputError naming the first bad key."""
    from sparsity_latency.attacks import ATTACKS, BUDGET_KEYS
    from sparsity_latency.data import check_dataset_name
    from sparsity_latency.latency.backends import BACKENDS, event_backend_problem
    from sparsity_latency.methods import METHODS
    from sparsity_latency.models import MODELS
    from sparsity_latency.models.fusion import FUSIONS
    from sparsity_latency.models.layers import NEURONS, SNNTORCH_SURROGATES
    from sparsity_latency.models.quantized import WEIGHT_QUANTIZERS, check_weight_bits
    from sparsity_latency.neurons import QUANT_GRADS, RESETS, SURROGATES
    from sparsity_latency.neurons.surrogates import surrogate_param

    def known(name: str, value: str, registry: dict | tuple) -> None:
        _require(value in registry, f"unknown {name} '{value}' (known: {', '.join(sorted(registry))})")

    def positive(name: str, value: float) -> None:
        _require(value > 0, f"config '{name}' must be > 0, got {value}")

    def non_negative(name: str, value: float) -> None:
        _require(value >= 0, f"config '{name}' must be >= 0, got {value}")

    study, data, model = config.study, config.data, config.model
    train, attack, profile = config.train, config.attack, config.profile
    _require(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study.name) is not None,
             f"config 'study.name' must be a plain folder name (letters, digits, . _ -), got '{study.name}'")
    _require(len(study.seeds) > 0, "config 'study.seeds' must list at least one seed")
    _require(len(set(study.seeds)) == len(study.seeds), "config 'study.seeds' lists a seed twice")
    _require(len(study.methods) > 0, "config 'study.methods' must list at least one method")
    _require(len(set(study.methods)) == len(study.methods), "config 'study.methods' lists a method twice")
    for seed in (*study.seeds, config.seed):
        _require(seed >= 0, f"seeds must be >= 0, got {seed}")
    for method in (*study.methods, train.method):
        known("training method", method, METHODS)
    dataset_problem = check_dataset_name(data.name)
    _require(dataset_problem is None, f"config 'data.name': {dataset_problem}")
    for key in ("time_steps", "frame_clip", "contrast_threshold", "render_dt_us", "downsample"):
        positive(f"data.{key}", getattr(data, key))
    for key in ("train_samples", "test_samples", "threshold_sigma", "refractory_us", "duration_us", "denoise_us"):
        non_negative(f"data.{key}", getattr(data, key))
    _require(0 < data.test_fraction < 1, f"config 'data.test_fraction' must be in (0, 1), got {data.test_fraction}")
    known("fusion", model.fusion, FUSIONS)
    _require(0 <= data.background < 1, f"config 'data.background' must be in [0, 1), got {data.background}")
    for key in ("leak_rate_hz", "shot_noise_hz"):
        non_negative(f"data.{key}", getattr(data, key))
    positive("data.aps_interval_us", data.aps_interval_us)
    known("model", model.name, MODELS)
    known("neuron", model.neuron, NEURONS)
    _require(all(c > 0 for c in model.channels), "config 'model.channels' must all be > 0")
    channel_problem = MODELS[model.name].check_channels(model.channels)
    _require(channel_problem is None, f"config 'model.channels': {channel_problem}")
    _require(model.membrane_bits >= 1.5, f"config 'model.membrane_bits' must be >= 1.5 (1.58 = ternary), "
             f"got {model.membrane_bits}")
    _require(model.membrane_bits <= 8 or model.membrane_bits >= 32,
             f"config 'model.membrane_bits' must be at most 8, or 32 for full precision, got {model.membrane_bits}")
    _require(0 < model.beta <= 1, f"config 'model.beta' must be in (0, 1], got {model.beta}")
    positive("model.threshold", model.threshold)
    _require(model.membrane_bits >= 32 or float(model.threshold).is_integer(),
             f"config 'model.threshold' must be a whole number of grid levels when the membrane is quantized, "
             f"got {model.threshold}")
    _require(model.neuron != "snntorch" or model.membrane_bits >= 32,
             "config 'model.neuron' = \"snntorch\" runs snntorch's own Leaky, which is full precision: "
             "set model.membrane_bits = 32")
    _require(model.neuron != "snntorch" or model.surrogate in SNNTORCH_SURROGATES,
             f"config 'model.surrogate': snntorch's Leaky has no '{model.surrogate}' surrogate of the same shape "
             f"(use one of: {', '.join(SNNTORCH_SURROGATES)})")
    _require(model.neuron != "snntorch" or not model.detach_reset,
             "config 'model.detach_reset': snntorch's Leaky keeps the spike's gradient in its reset; "
             "set model.detach_reset = false with neuron = \"snntorch\"")
    non_negative("model.surrogate_param", model.surrogate_param)
    known("reset", model.reset, RESETS)
    known("surrogate", model.surrogate, SURROGATES)
    known("quantizer gradient", model.quant_grad, QUANT_GRADS)
    known("weight quantizer", model.weight_quant, WEIGHT_QUANTIZERS)
    weight_problem = check_weight_bits(model.weight_bits, model.weight_quant)
    _require(weight_problem is None, f"config 'model.weight_bits': {weight_problem}")
    _require(0 < model.gate_mass <= 1, f"config 'model.gate_mass' must be in (0, 1], got {model.gate_mass}")
    non_negative("model.gate_loss_weight", model.gate_loss_weight)
    _require(not model.gating or MODELS[model.name].supports_gating,
             f"config 'model.gating': model '{model.name}' has no convolution layers to gate")
    for key in ("epochs", "batch_size", "lr", "pgd_steps"):
        positive(f"train.{key}", getattr(train, key))
    for key in ("eps", "pgd_step_size", "fgsm_step_size", "trades_beta", "grad_reg_lambda"):
        non_negative(f"train.{key}", getattr(train, key))
    _require(train.eps <= 1, f"config 'train.eps' is an L∞ radius in the input range [0, 1]: must be <= 1, "
             f"got {train.eps}")
    positive("train.grad_reg_h", train.grad_reg_h)
    _require(0 <= train.grad_tau < 1, f"config 'train.grad_tau' must be in [0, 1), got {train.grad_tau}")
    _require(len(attack.attacks) > 0, "config 'attack.attacks' must list at least one attack")
    _require(len(set(attack.attacks)) == len(attack.attacks), "config 'attack.attacks' lists an attack twice")
    for name in attack.attacks:
        known("attack", name, ATTACKS)
    for unit, key in BUDGET_KEYS.items():
        values = getattr(attack, key)
        _require(all(v >= 0 for v in values), f"config 'attack.{key}' must all be >= 0, got {list(values)}")
        _require(len(set(values)) == len(values), f"config 'attack.{key}' lists a value twice")
        users = [name for name in attack.attacks if ATTACKS[name].norm == unit]
        if users:
            _require(len(values) > 0, f"config 'attack.{key}' is empty, but attack '{users[0]}' needs budgets from it")
    _require(all(eps <= 1 for eps in attack.eps), "config 'attack.eps' are L∞ radii in the input range [0, 1]: "
             f"each must be <= 1, got {list(attack.eps)}")
    for key in ("pgd_steps", "apgd_steps", "restarts", "flip_steps", "check_steps_factor", "check_restarts",
                "batch_size"):
        positive(f"attack.{key}", getattr(attack, key))
    non_negative("attack.samples", attack.samples)
    non_negative("attack.pgd_step_size", attack.pgd_step_size)
    known("surrogate", attack.swap_surrogate, SURROGATES)
    non_negative("attack.swap_param", attack.swap_param)
    if "surrogate-swap" in attack.attacks:
        _require((attack.swap_surrogate, surrogate_param(attack.swap_surrogate, attack.swap_param))
                 != (model.surrogate, surrogate_param(model.surrogate, model.surrogate_param)),
                 f"config 'attack.swap_surrogate': surrogate-swap with the model's own surrogate ({model.surrogate}) "
                 "is plain PGD; choose a smoother one (e.g. atan)")
    if "event-flip" in attack.attacks:
        _require(float(data.frame_clip).is_integer(),
                 f"config 'data.frame_clip' must be a whole number of events for event-flip (one event = "
                 f"1/frame_clip of input), got {data.frame_clip}")
    if attack.checks:
        _require(len(attack.eps) > 0, "config 'attack.eps' is empty, but the gradient-masking checks run PGD at it "
                 "(or set attack.checks = false)")
        _require(attack.check_steps_factor >= 2,
                 f"config 'attack.check_steps_factor' must be >= 2 (more steps than PGD's), "
                 f"got {attack.check_steps_factor}")
        _require(attack.check_restarts > attack.restarts,
                 f"config 'attack.check_restarts' ({attack.check_restarts}) must be more than attack.restarts "
                 f"({attack.restarts})")
    _require(0 < attack.check_eps <= 1, f"config 'attack.check_eps' must be in (0, 1], got {attack.check_eps}")
    _require(0 <= attack.check_tolerance < 1,
             f"config 'attack.check_tolerance' must be in [0, 1), got {attack.check_tolerance}")
    _require(len(profile.batch_sizes) > 0 and all(b > 0 for b in profile.batch_sizes),
             "config 'profile.batch_sizes' must list batch sizes > 0")
    _require(len(set(profile.batch_sizes)) == len(profile.batch_sizes),
             "config 'profile.batch_sizes' lists a batch size twice")
    for backend in profile.backends:
        known("backend", backend, BACKENDS)
    _require(len(profile.backends) > 0 and len(set(profile.backends)) == len(profile.backends),
             "config 'profile.backends' must list each backend once")
    if "event" in profile.backends:
        problem = event_backend_problem(model.name, model.neuron, model.gating, data.name)
        _require(problem is None, f"config 'profile.backends': the event engine cannot run this network: {problem} "
                 "(set profile.backends = [\"dense\"])")
    _require(profile.max_repeats >= profile.repeats,
             f"config 'profile.max_repeats' ({profile.max_repeats}) must be >= profile.repeats ({profile.repeats})")
    _require(0 < profile.stable_tolerance < 1,
             f"config 'profile.stable_tolerance' must be in (0, 1), got {profile.stable_tolerance}")
    _require(all(0 <= t <= 1 for t in profile.exit_thresholds),
             f"config 'profile.exit_thresholds' must lie in [0, 1], got {list(profile.exit_thresholds)}")
    for key in ("repeats", "threads", "samples"):
        positive(f"profile.{key}", getattr(profile, key))
    for key in ("warmup", "ac_pj", "mac_pj", "memory_pj_per_bit"):
        non_negative(f"profile.{key}", getattr(profile, key))
    known("attack", config.correlate.attack, ATTACKS)
    non_negative("correlate.eps", config.correlate.eps)
    _require(0 <= config.correlate.exit_threshold <= 1,
             f"config 'correlate.exit_threshold' must lie in [0, 1], got {config.correlate.exit_threshold}")
    positive("correlate.bootstrap_resamples", config.correlate.bootstrap_resamples)
    positive("correlate.permutations", config.correlate.permutations)
    for key in ("time_min", "cpus_per_task", "mem_gb", "array_parallelism"):
        positive(f"slurm.{key}", getattr(config.slurm, key))
    non_negative("slurm.gpus_per_node", config.slurm.gpus_per_node)


def check_study(config: Config) -> None:
    """A study must measure the gradients its correlations read: correlate's attack and eps are evaluated."""
    from sparsity_latency.attacks import ATTACKS, BUDGET_KEYS

    _require(config.correlate.attack in config.attack.attacks,
             f"config 'correlate.attack' ({config.correlate.attack}) must be one of attack.attacks")
    key = BUDGET_KEYS[ATTACKS[config.correlate.attack].norm]
    _require(any(math.isclose(config.correlate.eps, eps) for eps in getattr(config.attack, key)),
             f"config 'correlate.eps' ({config.correlate.eps}) must be one of attack.{key}")
    _require(any(math.isclose(config.correlate.exit_threshold, t) for t in config.profile.exit_thresholds),
             f"config 'correlate.exit_threshold' ({config.correlate.exit_threshold}) must be one of "
             "profile.exit_thresholds")
