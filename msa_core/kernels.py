"""Compiled CPU kernels for the linear-chain path: top-1 correctness and prefix states along join orders.

On the linear-chain path a coalition's logits are ``base + sum of unit contributions``. Along a join
order they grow by one contribution per step, and a classifier's per-class accuracy only needs, for
each step and input, whether the label's logit is the largest. Done with tensor operations this
takes several passes over ``steps x inputs x classes`` values; fused in one compiled loop the
contributions of one input (``n_units x n_classes``) stay in L1 cache and each step costs a few
dozen instructions. The kernel is compiled with numba when it is installed; otherwise callers use
tensor operations (same values, slower).

:func:`prefix_states` serves every other objective (user callables included): it writes the
read-out's outputs for consecutive joins of a block of orders in one pass, each a running sum in join
order in the contributions' dtype (no reassociation, so the tensor fallback gives the same bits).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import numpy as np
import torch

__all__ = ["accuracy_along_orders", "numba_available", "prefix_states"]

# Bytes of one input tile of every unit's margin steps: about the size of a core's L2 cache.
_TILE_BYTES = 2**20


@functools.lru_cache(maxsize=1)
def _kernel():
    import numba

    # nnan/ninf only let LLVM vectorise the max; no reassociation, so sums stay exact in join order.
    # Layouts are class-major with inputs sorted by label, so every inner loop is a contiguous stream.
    @numba.njit(parallel=True, cache=True, nogil=True, fastmath={"nnan", "ninf"})
    def kernel(margin_steps, margin_base, weights, class_starts, permutations, values, tile):  # pragma: no cover
        m, n = permutations.shape
        _, n_logits, n_inputs = margin_steps.shape
        n_classes = class_starts.shape[0] - 1
        # inputs in tiles: one tile of every unit's steps stays in cache while all orders walk over it
        for t0 in range(0, n_inputs, tile):
            t1 = min(n_inputs, t0 + tile)
            width = t1 - t0
            for p in numba.prange(m):
                margins = margin_base[:, t0:t1].copy()
                top = np.empty(width, dtype=margin_steps.dtype)
                for j in range(n + 1):
                    if j > 0:
                        unit = permutations[p, j - 1]
                        for c in range(n_logits):
                            for i in range(width):
                                margins[c, i] += margin_steps[unit, c, t0 + i]
                    for i in range(width):
                        top[i] = margins[0, i]
                    for c in range(1, n_logits):
                        for i in range(width):
                            top[i] = max(top[i], margins[c, i])
                    for k in range(n_classes):
                        total = 0.0
                        for i in range(max(class_starts[k], t0), min(class_starts[k + 1], t1)):
                            total += weights[i] if top[i - t0] <= 0 else 0.0
                        values[p, j, k] += total

    return kernel


@contextlib.contextmanager
def _torch_thread_count() -> Iterator[None]:
    """Run a parallel numba kernel on torch's thread count, and give torch its count back after.

    numba's OpenMP threading layer shares the OpenMP runtime with torch and resets its thread count
    when a parallel kernel runs: a caller's ``torch.set_num_threads(1)`` would silently become 2.
    """
    import numba

    threads = torch.get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        torch.set_num_threads(threads)


def _compiles(kernel_factory) -> bool:
    try:
        kernel_factory()
        return True
    except Exception:  # noqa: BLE001 - any import or compile failure means: use the tensor fallback
        return False


@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    """True when numba imports and compiles the kernel on this machine."""
    return _compiles(_kernel)


def accuracy_along_orders(
    contributions: torch.Tensor,
    base: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    n_classes: int,
    permutations: torch.Tensor,
) -> torch.Tensor:
    """Weighted top-1 accuracy per class at every step of every join order.

    Args:
        contributions: ``(n_inputs, n_units, n_logits)``: unit u's additive share of input i's logits.
        base: ``(n_inputs, n_logits)``: the logits with every unit lesioned.
        labels: int ``(n_inputs,)``.
        weights: ``(n_inputs,)``: what a correct input adds to its label's entry (1 / class size for
            per-class accuracy).
        n_classes: length of the value vector.
        permutations: int ``(m, n_units)`` join orders.

    Returns:
        float64 ``(m, n_units + 1, n_classes)``: entry ``[p, j, c]`` sums the weights of the inputs of
        class c whose label logit is at least every other logit (ties count as correct) when the first
        ``j`` units of order ``p`` are intact. Margins to the label logit are accumulated in join order
        in the contributions' dtype.
    """
    labels_np = labels.detach().cpu().numpy().astype(np.int64)
    order = np.argsort(labels_np, kind="stable")  # inputs grouped by class
    labels_np = labels_np[order]
    rows = np.arange(labels_np.shape[0])
    contributions_np = contributions.detach().cpu().numpy()[order]
    base_np = base.detach().cpu().numpy()[order]
    # margin of every logit over the label's logit: an input is correct while all margins are <= 0
    margin_steps = contributions_np - contributions_np[rows, :, labels_np][:, :, None]  # (inputs, units, logits)
    margin_steps = np.ascontiguousarray(margin_steps.transpose(1, 2, 0))  # (units, logits, inputs)
    margin_base = np.ascontiguousarray((base_np - base_np[rows, labels_np][:, None]).T)  # (logits, inputs)
    class_starts = np.searchsorted(labels_np, np.arange(n_classes + 1)).astype(np.int64)
    m, n = permutations.shape
    values = np.zeros((m, n + 1, n_classes), dtype=np.float64)
    with _torch_thread_count():
        _kernel()(
            margin_steps,
            margin_base,
            np.ascontiguousarray(weights.detach().cpu().numpy().astype(np.float64)[order]),
            class_starts,
            np.ascontiguousarray(permutations.detach().cpu().numpy().astype(np.int64)),
            values,
            max(1, _TILE_BYTES // max(1, margin_steps.shape[0] * margin_steps.shape[1] * margin_steps.itemsize)),
        )
    return torch.from_numpy(values)


@functools.lru_cache(maxsize=1)
def _prefix_kernel():
    import numba

    # Serial on purpose: each step is one vectorised add over a row that sits in cache, a few
    # microseconds; threads (prange) cost more than that here and stopped the loop vectorising.
    # No fastmath: each entry is the exact float sum in join order, as repeated torch adds give.
    @numba.njit(cache=True, nogil=True)
    def kernel(contributions, states, permutations, out):  # pragma: no cover
        k, steps = permutations.shape
        for p in range(k):
            previous = states[p]
            for j in range(steps):
                np.add(previous, contributions[permutations[p, j]], out[p, j])
                previous = out[p, j]
            states[p] = previous

    return kernel


@functools.lru_cache(maxsize=1)
def prefix_kernel_available() -> bool:
    """True when numba compiles the prefix-state kernel here (else :func:`prefix_states` uses torch)."""
    return _compiles(_prefix_kernel)


def prefix_states(contributions: torch.Tensor, states: torch.Tensor, joins: torch.Tensor, out: torch.Tensor) -> None:
    """Advance running states by consecutive joins, recording each step (in place).

    Args:
        contributions: ``(n_units, width)``: unit u's additive share of the flattened outputs.
        states: ``(k, width)``, same dtype: the outputs before the first join of each of ``k`` orders;
            updated in place to the outputs after the last one.
        joins: int ``(k, steps)``: the units that join, in order.
        out: ``(k, steps, width)``, same dtype: ``out[p, j]`` is filled with the state after join ``j``.

    Each entry is summed sequentially in join order in the contributions' dtype, so the compiled
    kernel (CPU tensors, numba available) and the tensor fallback give identical bits.
    """
    k, steps = joins.shape
    if (
        contributions.device.type == "cpu"
        and contributions.dtype in (torch.float32, torch.float64)
        and states.is_contiguous()
        and out.is_contiguous()
        and prefix_kernel_available()
    ):
        _prefix_kernel()(
            contributions.contiguous().numpy(),
            states.numpy(),
            joins.to(torch.int64).contiguous().numpy(),
            out.numpy(),
        )
        return
    for j in range(steps):
        states += contributions.index_select(0, joins[:, j])
        out[:, j] = states
