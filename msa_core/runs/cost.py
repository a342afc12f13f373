"""What a run will cost, measured on the run itself: :func:`estimate_cost`.

A rate measured once on another game (or on the same game at another batch size, or through another
evaluation path) is wrong by 10x and more. The estimate here starts the real run (same game, method,
budget, options, batch size and evaluation path: :func:`~msa_core.runs.execute.run_estimator`), lets it
run for about ``probe_seconds``, stops it, and extrapolates the planned evaluations from the rate of
the batches it timed (the first batch, which pays for warm-up and compilation, is left out). Nothing is
stored: the probe writes no checkpoint and no run.

The probe runs under the run's own memory bound (``max_memory``: a streamed run is timed streaming), and
:func:`memory_outlook` says, from the estimators' own memory plans, how the run will keep within it:
in memory, streamed with its accumulators (and result) on disk, or with its game values spilled to disk.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch

from ..estimators import (
    AutoEstimator, ExactEstimator, RunCancelled, SamplingEstimator,
    TopKEstimator, make_estimator,
)
from ..memory import format_bytes, resolve_max_memory
from .execute import plan, run_estimator
from .spec import ResolvedRun, RunSpec, budget_evaluations, resolve

__all__ = ["estimate_cost", "memory_outlook"]


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


def _seconds_per_row(game: Any) -> tuple[float, int]:
    """``(seconds per coalition of one small call, output values per coalition)``, after warming up both
    evaluation paths (compiled kernels are compiled here, not inside the timed batches)."""
    n = int(game.n_players)
    coalitions = torch.ones((2, n), dtype=torch.bool)
    coalitions[0, ::2] = False
    output_size = max(1, math.prod(tuple(torch.as_tensor(game(coalitions)).shape[1:])))
    along_orders = getattr(game, "evaluate_permutations", None)
    if callable(along_orders) and n > 1:
        along_orders(torch.stack([torch.arange(n), torch.arange(n).flip(0)]))
    began = time.perf_counter()
    game(coalitions)
    return (time.perf_counter() - began) / 2, output_size


def memory_outlook(spec: RunSpec, n_players: int, output_size: int, max_memory: int | str | None = None,
                   scratch_dir: Any = None) -> dict[str, Any]:
    """How a run of ``spec`` on ``n_players`` players with ``output_size`` values per coalition keeps
    within ``max_memory`` (bytes or "4GB"; None: automatic), from its estimator's own memory plan
    (:func:`msa_core.bounded.memory_plan`, :mod:`msa_core.estimators.spilled`); no game calls.

    Returns:
        ``{"max_memory", "automatic", "method", "mode", "on_disk", "disk_bytes", "error", "text"}``: the
        bound in bytes and whether it is the automatic one; the method that runs ("auto" resolved);
        ``mode`` "blocks"/"stream" (sampling, topk), "memory"/"spill" (exact, regressions); whether the
        result stays on disk; bytes written to disk (spilled values; None where the plan does not count them); ``error`` (one line) where the run cannot keep within the bound (the
        run would raise it), else None; ``text``: one line for the user.
    """
    bound = resolve_max_memory(max_memory)
    n, outputs = int(n_players), max(1, int(output_size))
    budget = budget_evaluations(spec, n)
    estimator = make_estimator(spec.method, **spec.options_dict)
    if isinstance(estimator, AutoEstimator):
        estimator = estimator.choose(n, budget, outputs, bound, scratch_dir, checkpoints=True)  # execute checkpoints
    outlook: dict[str, Any] = {"max_memory": bound, "automatic": max_memory is None, "method": estimator.name,
                               "mode": "memory",
                               "on_disk": False, "disk_bytes": 0, "error": None}
    try:
        if isinstance(estimator, (SamplingEstimator, TopKEstimator)):
            from ..bounded import memory_plan

            natural = estimator.permutations_per_round if isinstance(estimator, TopKEstimator) else None
            planned = memory_plan(estimator, n, outputs, bound, checkpoints=True, natural_block=natural)
            outlook.update(mode=planned.mode, on_disk=planned.on_disk, disk_bytes=None)
        elif n > 1:
            from ..estimators.spilled import exact_memory_plan, regression_memory_plan, regression_outline

            if isinstance(estimator, ExactEstimator):
                linear = exact_memory_plan(n, outputs, 1, bound, True)  # the mode does not depend on the block
            else:
                linear = regression_memory_plan(estimator, regression_outline(estimator, n, budget, outputs), outputs,
                                                bound, True)
            outlook.update(mode=linear.mode, on_disk=linear.result_on_disk, disk_bytes=linear.disk_bytes)
    except ValueError as error:
        outlook["error"] = str(error)
    outlook["text"] = _outlook_text(outlook)
    return outlook


def _outlook_text(outlook: dict[str, Any]) -> str:
    bound = f"{format_bytes(outlook['max_memory'])}{' (automatic)' if outlook['automatic'] else ''}"
    if outlook["error"]:
        return f"cannot run within {bound}: {outlook['error']}"
    mode, disk = outlook["mode"], outlook["disk_bytes"]
    if mode == "stream":
        where = "accumulators and result on disk" if outlook["on_disk"] else "accumulators in memory"
        return f"streams one sample at a time within {bound}; {where}"
    if mode == "spill":
        result = "result on disk" if outlook["on_disk"] else "result in memory"
        return f"spills {format_bytes(disk)} of game values to disk within {bound}; {result}"
    return f"in memory, within {bound}"


def estimate_cost(run: RunSpec | ResolvedRun, *, probe_seconds: float = 1.5,
                  max_memory: int | str | None = None) -> dict[str, Any]:
    """Time a few real batches of this run's game and extrapolate to the whole run.

    Args:
        run: a :class:`RunSpec` (resolved here: loads the model) or a :class:`ResolvedRun`.
        probe_seconds: how long the probe runs (at least two batches after the endpoints, unless that
            takes ``3 * probe_seconds``; a batch in flight is finished). The probe uses
            the run's own batches, unless one would take longer than ``3 * probe_seconds``: then smaller
            ones (a pessimistic rate).
        max_memory: the run's memory bound (bytes or "4GB"; None: automatic): the probe runs under it
            (on-disk arrays in a temporary folder, removed after).

    Returns:
        ``{"evaluations", "seconds_low", "seconds_high", "evaluations_per_second", "measured_evaluations",
        "measured_seconds", "complete", "memory"}``: the planned evaluations (an adaptive method's cap), a
        range of seconds for the whole run on this machine, the measured rate, what the probe did, whether
        the probe finished the whole run (then the range is the measured time itself), and
        :func:`memory_outlook`. Where the run cannot keep within the bound (``memory["error"]``) nothing
        is probed: the seconds and the rate are None.
    """
    resolved = run if isinstance(run, ResolvedRun) else resolve(run)
    game = resolved.game()
    evaluations = int(plan(resolved.spec, resolved, game)["evaluations"])
    per_row, output_size = _seconds_per_row(game)
    memory = memory_outlook(resolved.spec, int(game.n_players), output_size, max_memory)
    if memory["error"]:
        return {"evaluations": evaluations, "seconds_low": None, "seconds_high": None,
                "evaluations_per_second": None, "measured_evaluations": 0, "measured_seconds": 0.0,
                "complete": False, "memory": memory}
    with tempfile.TemporaryDirectory(prefix="msa-cost-") as scratch:
        return {**_probe(resolved, game, evaluations, per_row, probe_seconds, max_memory, scratch), "memory": memory}


def _probe(resolved: ResolvedRun, game: Any, evaluations: int, per_row: float, probe_seconds: float,
           max_memory: Any, scratch_dir: str) -> dict[str, Any]:
    """The timed probe of :func:`estimate_cost` (its keys but ``memory``)."""
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
                               cancel=deadline, max_memory=max_memory, scratch_dir=scratch_dir)
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
