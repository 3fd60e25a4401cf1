"""Wall-clock timing (latency/timing.py) against a fake clock that each call advances by a scripted time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from sparsity_latency.latency.timing import fixed_threads, per_sample_ms, time_per_sample


class FakeBackend:
    """`run(batch)` advances a fake clock (seconds) by `duration(call index)` and remembers its batches."""

    def __init__(self, duration: Callable[[int], float]) -> None:
        self.duration = duration
        self.now = 0.0
        self.batches: list[torch.Tensor] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, batch: torch.Tensor) -> None:
        self.now += self.duration(len(self.batches))
        self.batches.append(batch)


FRAMES = torch.arange(5.0).view(1, 5, 1).expand(3, 5, 1)  # [T, N, 1]: sample n holds the value n


def test_warmup_calls_are_run_but_not_timed() -> None:
    backend = FakeBackend(lambda call: 100.0 if call < 2 else 0.004)  # warm-up calls take 100 s
    timing = time_per_sample(backend, FRAMES, batch_size=1, warmup=2, min_repeats=4, max_repeats=4,
                             clock=backend.clock)
    assert len(backend.batches) == 2 + 4
    np.testing.assert_allclose(timing.per_sample_ms, [4.0] * 4)
    assert timing.repeats == 4


def test_stable_median_stops_after_the_second_round() -> None:
    backend = FakeBackend(lambda call: 0.002)
    timing = time_per_sample(backend, FRAMES, batch_size=1, warmup=1, min_repeats=5, max_repeats=50,
                             rel_tolerance=0.01, round_size=3, clock=backend.clock)
    assert timing.converged and timing.repeats == 5 + 3
    assert len(backend.batches) == 1 + 8
    assert timing.p50 == pytest.approx(2.0) and timing.p95 == pytest.approx(2.0) and timing.std == pytest.approx(0.0)


def test_drifting_times_run_to_max_repeats_unconverged() -> None:
    backend = FakeBackend(lambda call: 0.001 * (call + 1))  # every call slower than the last: the median drifts
    timing = time_per_sample(backend, FRAMES, batch_size=1, warmup=0, min_repeats=4, max_repeats=22,
                             rel_tolerance=0.01, round_size=4, clock=backend.clock)
    assert not timing.converged and timing.repeats == 22  # the last round is cut to fit max_repeats
    np.testing.assert_allclose(timing.per_sample_ms, np.arange(1, 23, dtype=float))


def test_median_settling_between_rounds_converges() -> None:
    # first round 1, 1, 9 ms (median 1), second round 1, 9 (median of 1, 1, 9, 1, 9 is still 1)
    times = [0.001, 0.001, 0.009, 0.001, 0.009]
    backend = FakeBackend(lambda call: times[call])
    timing = time_per_sample(backend, FRAMES, batch_size=1, warmup=0, min_repeats=3, max_repeats=10,
                             rel_tolerance=1e-9, round_size=2, clock=backend.clock)
    assert timing.converged and timing.repeats == 5 and timing.p50 == pytest.approx(1.0)


def test_times_are_divided_by_the_batch_size_and_batches_cycle_through_the_samples() -> None:
    backend = FakeBackend(lambda call: 0.012)
    timing = time_per_sample(backend, FRAMES, batch_size=4, warmup=1, min_repeats=2, max_repeats=2,
                             clock=backend.clock)
    np.testing.assert_allclose(timing.per_sample_ms, [3.0, 3.0])  # 12 ms per batch of 4
    assert timing.batch_size == 4
    assert [b[0, :, 0].tolist() for b in backend.batches] == [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]]
    assert all(b.shape == (3, 4, 1) for b in backend.batches)


def test_calls_run_under_inference_mode() -> None:
    modes = []
    backend = FakeBackend(lambda call: 0.001)
    time_per_sample(lambda batch: (modes.append(torch.is_inference_mode_enabled()), backend(batch)), FRAMES, 1,
                    warmup=1, min_repeats=2, max_repeats=2, clock=backend.clock)
    assert modes == [True, True, True]


def test_repeat_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        time_per_sample(lambda batch: None, FRAMES, 1, min_repeats=5, max_repeats=4)


def test_fixed_threads_sets_and_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
        timing = time_per_sample(lambda batch: None, FRAMES, 1, warmup=0, min_repeats=1, max_repeats=1)
    assert timing.threads == 1 and torch.get_num_threads() == before
    with pytest.raises(RuntimeError), fixed_threads(1):
        raise RuntimeError("restored even when the block fails")
    assert torch.get_num_threads() == before


def test_per_sample_ms_times_a_model_exactly_repeats_times() -> None:
    calls = []
    model = nn.Identity()
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    wall = per_sample_ms(model, FRAMES, batch_size=2, warmup=3, repeats=5)
    assert wall.shape == (5,) and (wall >= 0).all()
    assert len(calls) == 3 + 5 and calls[0] == (3, 2, 1)
