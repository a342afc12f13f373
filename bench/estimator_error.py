"""Error against exact Shapley modes at equal evaluation budgets, on an n = 16 game from a real model.

Two games from the built-in models, each with 16 players:

* ``dcgan-digits``: the 16 channels of block ``net.2``; value = the 32 generated images (a 32x1x32x32
  tensor game, as in the paper's GAN experiment);
* ``mlp-digits``: the 16 hidden units with the largest outgoing weights, the other 84 lesioned; value =
  the per-digit accuracy vector on the 500 held-out digits (the paper's MLP game, shrunk to n = 16).

For each estimator and budget (stated in permutations: every method spends the same number of game
evaluations, ``budget * (n - 1)``, up to rounding), the error is the root-mean-square difference from
the exact modes over all units and outputs, averaged over repeated seeds. Also prints how often the
true value lies within 3 standard errors (calibration).

Run: ``python -m bench.estimator_error [--repeats 20]``
"""

from __future__ import annotations

import argparse
import time

import torch

from msa_core import lesion_game, per_class_accuracy, shapley_modes
from msa_core.zoo import load_builtin

N_PLAYERS = 16


def gan_game():
    """dcgan-digits, players = the 16 channels of block net.2, value = the 32 generated images."""
    model, data = load_builtin("dcgan-digits")
    # the generator's body is an nn.Sequential: giving it the latents as (B, nz, 1, 1) lets the game
    # compute blocks net.0 and net.1 once instead of once per coalition (same values as the wrapper)
    latents = torch.from_numpy(data["z"])[:, :, None, None]
    game = lesion_game(model.net, "2", latents)
    assert game.n_players == N_PLAYERS
    return game


def mlp_game():
    """mlp-digits, players = the 16 hidden units with the largest outgoing weight norms (others lesioned)."""
    model, data = load_builtin("mlp-digits")
    game = lesion_game(model, "1", torch.from_numpy(data["x"]), objective=per_class_accuracy(data["y"], 10))
    chosen = model[2].weight.norm(dim=0).topk(N_PLAYERS).indices
    base = torch.zeros(game.n_players, dtype=torch.bool)

    def sub_game(coalitions: torch.Tensor) -> torch.Tensor:
        full = base.expand(coalitions.shape[0], -1).clone()
        full[:, chosen] = coalitions
        return game(full)

    return sub_game


GAMES = {"dcgan-digits net.2 (images)": gan_game, "mlp-digits 16 units (per-digit accuracy)": mlp_game}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 30, 100, 300])
    args = parser.parse_args(argv)
    for title, make_game in GAMES.items():
        table(title, make_game(), args)


def table(title: str, game, args) -> None:
    """Print one table of errors for ``game``."""
    started = time.perf_counter()
    exact = shapley_modes(game, N_PLAYERS, method="exact")
    print(f"\n## {title}\nexact: {exact.n_evaluations} evaluations in {time.perf_counter() - started:.1f} s; "
          f"|v(N) - v(empty)| = {(exact.intact - exact.empty).abs().mean():.3f} (mean over outputs)")
    methods = ["permutation", "antithetic", "owen"]
    print(f"RMSE against exact, mean over {args.repeats} seeds (lower is better); "
          "in brackets: share of estimates within 3 stderr of exact")
    header = f"{'budget (perms)':>14} {'evaluations':>11} " + " ".join(f"{m:>22}" for m in methods) + "  owen/perm"
    print(header)
    for budget in args.budgets:
        row = []
        rmse = {}
        evaluations = 0
        for method in methods:
            errors, covered = [], []
            for seed in range(args.repeats):
                result = shapley_modes(game, N_PLAYERS, method=method, n_permutations=budget, seed=seed)
                diff = result.values - exact.values
                errors.append(float(diff.pow(2).mean().sqrt()))
                covered.append(float((diff.abs() <= 3 * result.stderr + 1e-12).double().mean()))
                evaluations = result.n_evaluations if method == "permutation" else evaluations
            rmse[method] = sum(errors) / len(errors)
            row.append(f"{rmse[method]:.5f} ({sum(covered) / len(covered):.2f})")
        print(f"{budget:>14} {evaluations:>11} " + " ".join(f"{cell:>22}" for cell in row)
              + f"  {rmse['owen'] / rmse['permutation']:.2f}")


if __name__ == "__main__":
    main()
