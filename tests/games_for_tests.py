"""Games with known Shapley values, shared by the estimator tests."""

from __future__ import annotations

import torch


class UnanimityGame:
    """Sum of unanimity games ``v(S) = sum_k c_k [T_k subset of S]`` with tensor coefficients.

    Closed form: ``phi_i = sum_{k: i in T_k} c_k / |T_k|`` (see shared/MSA.md).

    Args:
        sets: bool ``(K, n)``: row k is the carrier T_k (non-empty).
        coefficients: float ``(K, *output_shape)``.
    """

    def __init__(self, sets: torch.Tensor, coefficients: torch.Tensor) -> None:
        assert bool(sets.any(1).all()), "every carrier must be non-empty"
        self.sets = sets
        self.coefficients = coefficients.to(torch.float64)
        self.n_players = sets.shape[1]
        self.calls = 0

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        # contained[b, k] = T_k is a subset of coalition b
        contained = (coalitions.unsqueeze(1) | ~self.sets.unsqueeze(0)).all(2).to(torch.float64)
        flat = self.coefficients.reshape(self.coefficients.shape[0], -1)
        return (contained @ flat).reshape(coalitions.shape[0], *self.coefficients.shape[1:])

    def shapley(self) -> torch.Tensor:
        weights = self.sets.to(torch.float64) / self.sets.sum(1, keepdim=True)  # (K, n)
        flat = self.coefficients.reshape(self.coefficients.shape[0], -1)
        return (weights.T @ flat).reshape(self.n_players, *self.coefficients.shape[1:])


def random_unanimity(n: int, n_terms: int, output_shape: tuple[int, ...], seed: int) -> UnanimityGame:
    """A random sum-of-unanimity game (carriers of 1..3 players plus a few large ones)."""
    generator = torch.Generator().manual_seed(seed)
    sets = torch.zeros((n_terms, n), dtype=torch.bool)
    for k in range(n_terms):
        size = int(torch.randint(1, min(n, 4) + 1, (1,), generator=generator)) if k % 4 else int(
            torch.randint(1, n + 1, (1,), generator=generator)
        )
        sets[k, torch.randperm(n, generator=generator)[:size]] = True
    coefficients = torch.randn((n_terms, *output_shape), generator=generator, dtype=torch.float64)
    return UnanimityGame(sets, coefficients)


class TableGame:
    """A game given by a full table of values indexed by coalition code (bit i = player i)."""

    def __init__(self, table: torch.Tensor, n_players: int) -> None:
        assert table.shape[0] == 2**n_players
        self.table = table.to(torch.float64)
        self.n_players = n_players
        self.powers = 2 ** torch.arange(n_players)

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        codes = (coalitions.long() * self.powers).sum(1)
        return self.table[codes]


def save_torchscript_and_inputs(folder, seed: int = 0, n: int = 10, inputs_name: str | None = None):
    """A tiny Linear(5, 6)-ReLU-Linear(6, 3) saved with ``torch.jit.save`` and an inputs ``.npz``
    (``x`` float32 ``(n, 5)``, ``labels`` int64 ``(n,)``): a model that needs an inputs file.

    Returns ``(model, pt_path, npz_path)``; the weights do not depend on ``seed``, the inputs do.
    """
    import warnings
    from pathlib import Path

    import numpy as np
    from torch import nn

    folder = Path(folder)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    pt = folder / "tiny_script.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated in recent torch; TorchScript files still exist
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(pt))
    rng = np.random.default_rng(seed)
    npz = folder / (inputs_name or f"inputs_{seed}.npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz, x=rng.standard_normal((n, 5)).astype(np.float32), labels=(np.arange(n) % 3).astype(np.int64))
    return model, pt, npz
