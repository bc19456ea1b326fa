"""XLA where it measures faster: a short timed comparison of the plain and compiled step.

On a CPU, XLA is faster for some models and slower for others (README, Speed: 1.73x for
the paper-width AlexNet's training step, 0.58x at width 0.25), so no fixed default is
right. Mode "auto" times both versions of the same step on the real inputs and keeps
the faster; "on" and "off" skip the timing.

The comparison: one warm-up call of each (tracing, and for XLA compiling), then `steps`
calls of each, alternating so that other jobs on the machine slow both alike; the best
call of each is compared (interference only ever slows a call down), so the choice
reflects steady-state speed. XLA's one-time cost, its first call less its best call, is
reported beside the choice: it is paid once per input shape whichever way the run goes
on, so it does not count against XLA.

`Calibration` drives the comparison one call at a time, for loops whose every call is
real work (training steps, evaluation batches); `choose` runs it at once on a call
without side effects.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

MODES = ("auto", "on", "off")
# Timed calls of each version after its warm-up: 2 * (1 + 3) = 8 calls in all.
CALIBRATION_STEPS = 3


def check_mode(mode: str) -> str:
    """Returns `mode` if it is one of `MODES`; raises a one-line `ValueError` otherwise."""
    if mode not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)}; received: {mode!r}")
    return mode


@dataclasses.dataclass(frozen=True)
class XlaChoice:
    """Whether a step runs XLA-compiled, and the measurements behind the choice.

    Attributes:
      mode: "auto", "on" or "off", as asked.
      xla: the decision.
      plain_seconds, xla_seconds: best steady call of each version, seconds per unit
        (a step, or an image where calls differ in size); None when not timed.
      compile_seconds: XLA's first call less its best call (tracing and compiling), s.
      reason: why, in words, when there was no timing.
    """

    mode: str
    xla: bool
    plain_seconds: float | None = None
    xla_seconds: float | None = None
    compile_seconds: float | None = None
    reason: str = ""

    def summary(self, unit: str = "step") -> str:
        """One line for the log: the decision and its figures."""
        decision = f"XLA {'on' if self.xla else 'off'} ({self.mode}"
        if self.plain_seconds is None or self.xla_seconds is None:
            return f"{decision}{': ' + self.reason if self.reason else ''})"
        return (
            f"{decision}: {1e3 * self.plain_seconds:.1f} ms per {unit} plain, "
            f"{1e3 * self.xla_seconds:.1f} ms compiled, XLA "
            f"{self.plain_seconds / self.xla_seconds:.2f}x; compiling took "
            f"{self.compile_seconds:.1f} s once)"
        )

    def as_dict(self) -> dict[str, Any]:
        """For metrics and results JSON."""
        return dataclasses.asdict(self)


def fixed_choice(mode: str, reason: str = "") -> XlaChoice:
    """The choice without timing: "on" and "off" as asked, "auto" as plain, for `reason`."""
    check_mode(mode)
    return XlaChoice(mode, mode == "on", reason=reason or ("as asked" if mode != "auto" else ""))


class Calibration:
    """The comparison, one call at a time: ask `next_xla`, run that version, `record` it.

    `choice` is None until every scheduled call is recorded (at once for "on"/"off").
    """

    def __init__(self, mode: str, steps: int = CALIBRATION_STEPS) -> None:
        check_mode(mode)
        if steps < 1:
            raise ValueError(f"steps must be >= 1; received: {steps}")
        self.mode = mode
        # Warm-ups first, then alternating timed calls.
        self._schedule = [False, True] * (1 + steps) if mode == "auto" else []
        self._seconds: list[float] = []
        self.choice: XlaChoice | None = None if mode == "auto" else fixed_choice(mode)

    def next_xla(self) -> bool:
        """Which version the next call runs: the schedule's, then the decision's."""
        if self.choice is not None:
            return self.choice.xla
        return self._schedule[len(self._seconds)]

    def skip(self, reason: str) -> None:
        """Decides without timing (plain for "auto"), e.g. when too few calls are left."""
        if self.choice is None:
            self.choice = fixed_choice(self.mode, reason)

    def record(self, seconds: float) -> None:
        """The time of the call `next_xla` asked for (per unit of work); decides after the last."""
        if self.choice is not None:
            return
        self._seconds.append(seconds)
        if len(self._seconds) < len(self._schedule):
            return
        plain = min(self._seconds[2::2])
        compiled = min(self._seconds[3::2])
        self.choice = XlaChoice(
            self.mode,
            compiled < plain,
            plain_seconds=plain,
            xla_seconds=compiled,
            compile_seconds=max(self._seconds[1] - compiled, 0.0),
        )


def choose(
    mode: str,
    plain: Callable[[], Any],
    compiled: Callable[[], Any],
    steps: int = CALIBRATION_STEPS,
    timer: Callable[[], float] = time.perf_counter,
) -> XlaChoice:
    """Runs the whole comparison now on two side-effect-free calls that block until done.

    "on" and "off" call neither.
    """
    calibration = Calibration(mode, steps)
    while calibration.choice is None:
        call = compiled if calibration.next_xla() else plain
        start = timer()
        call()
        calibration.record(timer() - start)
    return calibration.choice
