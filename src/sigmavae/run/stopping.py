"""Stop signals: SIGTERM (what a cluster scheduler sends, usually 30 s before it kills a job)
and SIGINT (Ctrl-C), honoured within seconds wherever a run or an evaluation is.

:class:`StopSignals` holds what a stop needs. Its handlers (:meth:`StopSignals.install`, main
thread only; the previous handlers come back with :meth:`StopSignals.restore`) record the
signal (:attr:`StopSignals.requested`). What happens next depends on where the process is:

* in work whose state a checkpoint must hold consistently (a training step, a checkpoint being
  written, a CSV row), nothing more: the loop reads :attr:`~StopSignals.requested` at its next
  safe point (after the step) and stops there;
* inside :meth:`StopSignals.interruptible` (work that can be thrown away: validation, a sample
  grid, an evaluation), :class:`StopRequested` is raised at once, that is as soon as the
  running Python code gets control back (Python runs signal handlers between the bytecodes of
  the main thread: after the torch kernel that is running, within one batch), and the caller
  decides what to keep.

:class:`StopRequested` is a :class:`BaseException` (as :class:`KeyboardInterrupt` is), so that
an ``except Exception`` in a metric does not swallow a stop.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopRequested", "StopSignals", "signal_name"]

#: The signals that ask a run to stop.
STOP_SIGNALS: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    """``"SIGTERM (signal 15)"``; ``"signal N"`` for a number that is no signal (e.g. the ``0``
    a callback may pass to ``request_stop``)."""
    try:
        return f"{signal.Signals(signum).name} (signal {signum})"
    except ValueError:
        return f"signal {signum}"


class StopRequested(BaseException):  # a BaseException, as KeyboardInterrupt is
    """A stop signal arrived inside :meth:`StopSignals.interruptible` work.

    Attributes:
        signum: the signal's number (``128 + signum`` is the shell's exit status for it).
        phase: what was abandoned (``"validation"``, ``"evaluation"``, ...).
    """

    def __init__(self, signum: int, phase: str) -> None:
        super().__init__(signum, phase)
        self.signum, self.phase = signum, phase

    def __str__(self) -> str:
        return f"stopped by {signal_name(self.signum)} during {self.phase}"


class StopSignals:
    """The stop state of one run or evaluation (see the module docstring).

    >>> stops = StopSignals()
    >>> with stops:                                    # handlers installed, then restored
    ...     with stops.interruptible("evaluation"):    # a signal here raises StopRequested
    ...         report = evaluate(...)

    Args:
        signals: the signals to handle (default: SIGTERM and SIGINT).
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        #: the signal that asked to stop, or ``None``
        self.requested: int | None = None
        self._phase: str | None = None
        self._previous: dict[int, Any] = {}

    def request(self, signum: int) -> None:
        """Record a stop; inside :meth:`interruptible` work, raise :class:`StopRequested` (once:
        a second signal while the first stop unwinds is only recorded)."""
        self.requested = signum
        if self._phase is not None:
            phase, self._phase = self._phase, None
            raise StopRequested(signum, phase)

    @contextlib.contextmanager
    def interruptible(self, phase: str) -> Iterator[None]:
        """Work in the block is abandoned at once by a stop (:class:`StopRequested`, also on
        entry if a stop was requested before); ``phase`` names it in the message."""
        if self.requested is not None:
            raise StopRequested(self.requested, phase)
        outer, self._phase = self._phase, phase
        try:
            yield
        finally:
            self._phase = outer

    def install(self, handler: Callable[[int], None] | None = None) -> bool:
        """Handle :attr:`signals` with ``handler(signum)`` (default :meth:`request`); ``False``
        (and nothing changed) off the main thread, where Python cannot handle signals."""
        act = handler or self.request

        def on_signal(signum: int, frame: FrameType | None) -> None:
            act(signum)

        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            self.restore()
            return False
        return True

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
