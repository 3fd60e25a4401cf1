"""Stopping a run cleanly: SIGTERM, SIGUSR1 and SIGUSR2 (what SLURM and schedulers send before they kill a job)
ask the running stage to stop at its next safe point, write a checkpoint and end with `StopSignalError`.

The handler only sets a flag: the training loop looks at it after every batch, so a checkpoint is never written
from inside a signal handler, half-way through an update. Where a handler was installed before ours (submitit's,
inside a SLURM job: it requeues the job), it is called once our checkpoint is written.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignalError(Exception):
    """A stage stopped on a signal after writing its checkpoint: running it again resumes there."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}: checkpoint written {where}; run the same "
                         f"command again to resume")


class StopRequest:
    """Whether a stop signal arrived (`requested`), which one, and the handlers it replaced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def stop(self, where: str) -> None:
        """Called once the checkpoint is written: hand the signal on to the handler it replaced (submitit's
        requeue), then raise `StopSignalError`."""
        assert self.signum is not None
        previous = self.previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)
        raise StopSignalError(self.signum, where)


NEVER = StopRequest()  # never requested: for callers that install no handlers


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch the stop signals for the duration (main thread only: elsewhere, nothing is installed)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    for signum in SIGNALS:
        request.previous[signum] = signal.signal(signum, request._handle)
    try:
        yield request
    finally:
        for signum, handler in request.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
