"""The linear-chain evaluation path of :class:`~msa_core.games.LesionGame` (see :mod:`msa_core.games`).

When the lesioned child of an ``nn.Sequential`` is followed by ``nn.Linear``, the linear layer's output
is ``base + sum_{i in S} C_i`` with ``C_i = W[:, i] (h_i - r_i)``: a coalition is one small matrix
product, and along a join order the prefix sums make each join O(1) in the layer width. The game's
setup (``_setup_linear_chain``) fills ``_contributions`` ``(n_units, n_inputs, out)``, ``_base``
``(n_inputs, out)``, ``_rest`` (the children after the linear layer), ``_linear_out`` and
``_chain_row_elements``; this mixin evaluates coalitions and join orders from them.
"""

from __future__ import annotations

from typing import Callable

import torch

from .batch_inputs import output_tensor

__all__ = ["LinearChainPath"]

# Entries of read-out outputs per objective call along join orders (linear-chain path): large enough
# that per-call overhead vanishes, small enough to stay in a last-level cache.
_CHAIN_CALL_ELEMENTS = 2**21


class LinearChainPath:
    """Evaluation of the linear-chain path, mixed into :class:`~msa_core.games.LesionGame`."""

    def _finish_states(self, states: torch.Tensor, intact_count: Callable[[int], int]) -> torch.Tensor:
        """Linear-layer outputs ``(c, n_inputs, out)`` -> objective values ``(c, *output_shape)``."""
        if len(self._rest):
            c, n_tile = states.shape[:2]
            out = output_tensor(self._rest(states.reshape(c * n_tile, -1)))
            states = out.reshape(c, n_tile, *out.shape[1:])
        return self._score(states, intact_count)

    def _call_linear(self, coalitions: torch.Tensor) -> torch.Tensor:
        mask = coalitions.to(self._contributions.dtype)
        n_units, n_inputs, out = self._contributions.shape
        # BLAS sums a lone row (a matrix-vector product) in another order than rows of a matrix product, so a
        # coalition's value would depend on the batch it came in (batch_size=1): a lone row goes with a copy
        rows = mask if len(mask) != 1 else mask.expand(2, -1)
        states = self._base + (rows @ self._contributions.reshape(n_units, -1))[: len(mask)].reshape(-1, n_inputs, out)
        return self._finish_states(states, lambda row: int(coalitions[row].sum()))

    def _chain_values(self, permutations: torch.Tensor) -> torch.Tensor:
        """Values along join orders: ``(m, n_players + 1, *output_shape)``; see :class:`~msa_core.types.ChainGame`.

        Bound as ``evaluate_permutations`` only on the linear-chain path, so estimators that probe for
        it fall back to coalition matrices elsewhere. Per-class accuracy of a linear read-out runs in
        the fused kernel of :mod:`msa_core.kernels` when numba is available. Any other objective (a
        user callable included) gets the read-out's outputs of many consecutive joins in one call:
        ``(rows, n_inputs, *model_output)`` in the model's dtype, about ``_CHAIN_CALL_ELEMENTS``
        entries (``batch_size`` rows when one is given). Each join's outputs are the running sum of
        the contributions in join order, so they do not depend on how joins are grouped into calls.
        The endpoints (empty and full coalition) are evaluated as coalitions.
        """
        permutations = permutations.to(self.device, torch.int64)
        if self._fused_top1():
            return self._chain_values_fused(permutations)
        from .kernels import prefix_states

        m, n = permutations.shape
        n_units, n_inputs, out = self._contributions.shape
        contributions = self._contributions.reshape(n_units, n_inputs * out)
        with torch.no_grad():
            if getattr(self, "_chain_ends", None) is None:  # the same two coalitions for every block of orders
                empty_and_full = torch.zeros((2, n), dtype=torch.bool, device=self.device)
                empty_and_full[1] = True
                self._chain_ends = self._call_linear(empty_and_full)
            ends = self._chain_ends
            values = torch.empty((m, n + 1, *ends.shape[1:]), dtype=ends.dtype, device=ends.device)
            values[:, 0], values[:, n] = ends[0], ends[1]
            inner = n - 1  # coalitions strictly between the endpoints along each order
            if inner < 1 or m == 0:
                return values
            rows = self.batch_size or max(1, _CHAIN_CALL_ELEMENTS // self._chain_row_elements)
            steps = min(inner, rows)
            orders_per_call = max(1, rows // inner) if steps == inner else 1
            # one buffer reused by every call: fresh large allocations would page-fault each time
            buffer = torch.empty(min(m, orders_per_call) * steps * n_inputs * out, dtype=contributions.dtype, device=self.device)
            for p0 in range(0, m, orders_per_call):
                block = permutations[p0 : p0 + orders_per_call]
                k = block.shape[0]
                states = self._base.reshape(1, -1).expand(k, -1).clone()
                for j0 in range(0, inner, steps):
                    joins = block[:, j0 : j0 + steps]
                    s = joins.shape[1]
                    outputs = buffer[: k * s * n_inputs * out].view(k, s, n_inputs * out)
                    prefix_states(contributions, states, joins, outputs)
                    scored = self._finish_states(outputs.view(k * s, n_inputs, out), lambda row, j0=j0, s=s: j0 + 1 + row % s)
                    values[p0 : p0 + k, 1 + j0 : 1 + j0 + s] = scored.reshape(k, s, *scored.shape[1:])
        return values

    def _fused_top1(self) -> bool:
        from .kernels import numba_available
        from .objectives import PerClassAccuracy

        return (
            isinstance(self.objective, PerClassAccuracy)
            and not len(self._rest)
            and self.device.type == "cpu"
            and self._linear_out == self.objective.n_classes
            and numba_available()
        )

    def _chain_values_fused(self, permutations: torch.Tensor) -> torch.Tensor:
        from .kernels import accuracy_along_orders

        if getattr(self, "_contributions_by_input", None) is None:
            self._contributions_by_input = self._contributions.permute(1, 0, 2).contiguous()
        objective = self.objective
        label_weights = objective.weights[torch.arange(self.n_inputs), objective.labels]
        return accuracy_along_orders(
            self._contributions_by_input, self._base, objective.labels, label_weights, objective.n_classes, permutations
        )
