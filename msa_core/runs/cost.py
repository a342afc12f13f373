"""What a run will cost, measured on the run itself: :func:`estimate_cost`.

A rate measured once on another game (or on the same game at another batch size, or through another
evaluation path) is wrong by 10x and more. The estimate here starts the real run (same game, method,
budget, options, batch size and evaluation path: :func:`~msa_core.runs.execute.run_estimator`), lets it
run for about ``probe_seconds``, stops it, and extrapolates the planned evaluations from the rate of
the batches it timed (the first batch, which pays for warm-up and compilation, is left out). Nothing is
stored: the probe writes no checkpoint and no run.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..estimators import RunCancelled
from .execute import plan, run_estimator
from .spec import ResolvedRun, RunSpec, resolve

__all__ = ["estimate_cost"]


class _Deadline:
    """A cancel flag that turns on ``seconds`` after :meth:`start` once ``samples`` holds the endpoints
    and two timed batches (a rate needs two), and at ``3 * seconds`` in any case."""

    def __init__(self, seconds: float, samples: list) -> None:
        self.seconds, self.samples, self.began = float(seconds), samples, float("inf")

    def start(self) -> None:
        self.began = time.perf_counter()

    def is_set(self) -> bool:
        elapsed = time.perf_counter() - self.began
        return elapsed >= 3 * self.seconds or (elapsed >= self.seconds and len(self.samples) >= 3)


def _seconds_per_row(game: Any) -> float:
    """Seconds per coalition of one small call, after warming up both evaluation paths (compiled
    kernels are compiled here, not inside the timed batches)."""
    n = int(game.n_players)
    coalitions = torch.ones((2, n), dtype=torch.bool)
    coalitions[0, ::2] = False
    game(coalitions)
    along_orders = getattr(game, "evaluate_permutations", None)
    if callable(along_orders) and n > 1:
        along_orders(torch.stack([torch.arange(n), torch.arange(n).flip(0)]))
    began = time.perf_counter()
    game(coalitions)
    return (time.perf_counter() - began) / 2


def estimate_cost(run: RunSpec | ResolvedRun, *, probe_seconds: float = 1.5) -> dict[str, Any]:
    """Time a few real batches of this run's game and extrapolate to the whole run.

    Args:
        run: a :class:`RunSpec` (resolved here: loads the model) or a :class:`ResolvedRun`.
        probe_seconds: how long the probe runs (at least two batches after the endpoints, unless that
            takes ``3 * probe_seconds``; a batch in flight is finished). The probe uses
            the run's own batches, unless one would take longer than ``3 * probe_seconds``: then smaller
            ones (a pessimistic rate).

    Returns:
        ``{"evaluations", "seconds_low", "seconds_high", "evaluations_per_second", "measured_evaluations",
        "measured_seconds", "complete"}``: the planned evaluations (an adaptive method's cap), a range of
        seconds for the whole run on this machine, the measured rate, what the probe did, and whether
        the probe finished the whole run (then the range is the measured time itself).
    """
    resolved = run if isinstance(run, ResolvedRun) else resolve(run)
    game = resolved.game()
    evaluations = int(plan(resolved.spec, resolved, game)["evaluations"])
    per_row = _seconds_per_row(game)
    rows = resolved.spec.batch_size or getattr(game, "preferred_batch_size", None) or 4096
    probe = resolved
    if per_row * rows > 3 * probe_seconds:  # a batch of the run would outlast the probe by far
        smaller = max(1, int(probe_seconds / max(per_row, 1e-9)))
        probe = ResolvedRun(**{**resolved.__dict__, "spec": resolved.spec.replace(batch_size=smaller)})
    samples: list[tuple[float, int]] = []
    deadline = _Deadline(probe_seconds, samples)
    began = time.perf_counter()
    deadline.start()
    complete = False
    try:
        result = run_estimator(probe, game, progress=lambda done, _total: samples.append((time.perf_counter(), done)),
                               cancel=deadline)
        complete = True
        evaluations = int(result.n_evaluations)
    except RunCancelled:
        pass
    measured_s = time.perf_counter() - began
    measured = samples[-1][1] if samples else 0
    if complete:
        rate = measured / measured_s if measured_s > 0 else float("inf")
        return {"evaluations": evaluations, "seconds_low": measured_s, "seconds_high": measured_s,
                "evaluations_per_second": rate, "measured_evaluations": measured, "measured_seconds": measured_s,
                "complete": True}
    timed = samples[1:]  # the first batch pays for warm-up
    rates = [(d1 - d0) / (t1 - t0) for (t0, d0), (t1, d1) in zip(timed[:-1], timed[1:]) if t1 > t0 and d1 > d0]
    if len(timed) >= 2 and timed[-1][0] > timed[0][0] and timed[-1][1] > timed[0][1]:
        rate = (timed[-1][1] - timed[0][1]) / (timed[-1][0] - timed[0][0])
    elif measured and measured_s > 0:
        rate = measured / measured_s
    else:
        rate = 1.0 / max(per_row, 1e-9)
    # +-25 % around the measured rate (machine load varies), wider where the batches' own rates spread
    fast, slow = rate * 1.25, rate / 1.25
    if len(rates) >= 4:
        quartiles = sorted(rates)
        fast = max(fast, quartiles[(3 * len(rates)) // 4])
        slow = min(slow, quartiles[len(rates) // 4])
    left = max(0, evaluations - measured)
    return {
        "evaluations": evaluations,
        "seconds_low": measured_s + left / fast,
        "seconds_high": measured_s + left / slow,
        "evaluations_per_second": rate,
        "measured_evaluations": int(measured),
        "measured_seconds": measured_s,
        "complete": False,
    }
