"""The game runner: calls a game on coalition matrices in batches, checking and counting.

Every estimator evaluates its game through one :class:`GameRunner` (see :mod:`.base`): it slices a
block of coalitions into ``batch_size`` rows per call (halving the batch on out-of-memory, which
changes no value), checks what the game returns (shape, dtype, finite), converts it to float64 on the
runner's device, counts evaluations, reports progress and honours a cancel flag.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch

from ..types import CoalitionMatrix, Game, GameValues

__all__ = ["GameRunner", "RunCancelled", "ProgressCallback", "MAX_ELEMENTS_PER_CALL", "DEFAULT_BATCH_SIZE"]

ProgressCallback = Callable[[int, int], Any]
"""``progress(done, total)``: game evaluations done so far and the planned total."""

# Upper bound on floats returned by one game call when the caller gives no batch size: keeps an
# image game (tens of thousands of outputs per coalition) within a few hundred MB per call.
MAX_ELEMENTS_PER_CALL = 2**24
DEFAULT_BATCH_SIZE = 4096


class RunCancelled(RuntimeError):
    """Raised inside an estimator when its ``cancel`` flag is set; the partial state is kept."""


class _CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class GameRunner:
    """Calls a game on coalition matrices in batches, validating and counting.

    Args:
        game: callable ``(batch, n_players) bool -> (batch, *output_shape) float``.
        n_players: number of players.
        batch_size: coalitions per game call (None: chosen from the output size).
        device: device on which values are returned (accumulators live there).
        progress: optional ``progress(done, total)`` callback.
        cancel: optional object with ``is_set()``; when set, the next call raises :class:`RunCancelled`.
    """

    def __init__(
        self,
        game: Game,
        n_players: int,
        *,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        progress: ProgressCallback | None = None,
        cancel: _CancelFlag | None = None,
    ) -> None:
        if not callable(game):
            raise TypeError(f"game must be callable on a coalition matrix; got {type(game).__name__}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        self.game = game
        self.n_players = n_players
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.progress = progress
        self.cancel = cancel
        self.n_evaluations = 0
        self.total = 0
        self.output_shape: tuple[int, ...] | None = None

    # -------------------------------------------------------------- checks
    def check_cancel(self) -> None:
        """Raise :class:`RunCancelled` if the cancel flag is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise RunCancelled("the run was cancelled")

    def _validate(self, values: Any, coalitions: CoalitionMatrix) -> GameValues:
        if not isinstance(values, torch.Tensor):
            raise TypeError(
                "the game must return a torch.Tensor of shape (batch, *output_shape); "
                f"it returned {type(values).__name__}"
            )
        if values.ndim == 0 or values.shape[0] != coalitions.shape[0]:
            raise ValueError(
                f"the game returned shape {tuple(values.shape)} for {coalitions.shape[0]} coalitions; "
                "its first dimension must be the batch of coalitions"
            )
        if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64, torch.bool)):
            raise TypeError(f"the game must return real numbers; got dtype {values.dtype}")
        values = values.to(self.device, torch.float64)
        shape = tuple(values.shape[1:])
        if self.output_shape is None:
            self.output_shape = shape
        elif shape != self.output_shape:
            raise ValueError(
                f"the game changed its output shape from {self.output_shape} to {shape} between calls"
            )
        bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            lesioned = (~coalitions[row]).nonzero().flatten().tolist()
            shown = lesioned[:10] + (["..."] if len(lesioned) > 10 else [])
            raise ValueError(
                f"the game returned NaN or infinity for {int(bad.sum())} coalition(s); the first one "
                f"lesions units {shown} ({len(lesioned)} lesioned). Check the objective for divisions "
                "by zero or log(0) when many units are lesioned."
            )
        return values

    def _rows_per_call(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        preferred = getattr(self.game, "preferred_batch_size", None)
        if isinstance(preferred, int) and preferred > 0:
            return preferred
        if self.output_shape is None:
            return DEFAULT_BATCH_SIZE
        per_row = max(1, math.prod(self.output_shape))
        return max(1, min(DEFAULT_BATCH_SIZE, MAX_ELEMENTS_PER_CALL // per_row))

    # -------------------------------------------------------------- evaluation
    def __call__(self, coalitions: CoalitionMatrix) -> GameValues:
        """Evaluate ``(batch, n_players)`` coalitions; returns float64 ``(batch, *output_shape)``."""
        if coalitions.dtype != torch.bool or coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            raise ValueError(
                f"coalitions must be a bool tensor of shape (batch, {self.n_players}); "
                f"got {coalitions.dtype} of shape {tuple(coalitions.shape)}"
            )
        chunks: list[torch.Tensor] = []
        start = 0
        while start < coalitions.shape[0]:
            self.check_cancel()
            rows = self._rows_per_call()
            chunk = coalitions[start : start + rows]
            try:
                values = self.game(chunk)
            except Exception as error:  # halve the batch on out-of-memory: results do not change
                if _is_out_of_memory(error) and rows > 1:
                    self.batch_size = max(1, rows // 2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                raise
            chunks.append(self._validate(values, chunk))
            start += chunk.shape[0]
            self.count(chunk.shape[0])
        if not chunks:
            return torch.empty((0, *(self.output_shape or ())), dtype=torch.float64, device=self.device)
        return torch.cat(chunks)

    def count(self, n: int) -> None:
        """Record ``n`` evaluations and report progress."""
        self.n_evaluations += n
        if self.progress is not None:
            self.progress(self.n_evaluations, max(self.total, self.n_evaluations))

    def endpoints(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v(empty), v(N))``, each ``(*output_shape)`` float64, in one game call."""
        coalitions = torch.zeros((2, self.n_players), dtype=torch.bool)
        coalitions[1] = True
        values = self(coalitions)
        return values[0], values[1]
