"""Error against exact Shapley modes at equal budgets in game evaluations, on tensor games from the built-ins.

Three tensor games (every coalition is evaluated once, tabulated, then every estimator reads the table,
so a method's error does not depend on how fast the model is):

* ``mlp-digits``: the 16 hidden units with the largest outgoing weights (the other 84 lesioned); value =
  the per-digit accuracy ``(10,)`` on the 500 held-out digits;
* ``dcgan-digits``: the 16 channels of block ``net.2``; value = the generated images ``(L, 1, 32, 32)``
  for the first ``L`` fixed latents (``--latents``, default 4: the table of 2^16 coalitions x 4,096 pixels
  is 1 GB of float32; 32 latents would be 8 GB);
* ``moe-lm``: the 8 experts (router outputs of both blocks, lesion "skip"); value = the per-language mean
  log-likelihood per token ``(5,)`` on 60 held-out words per language. Here ``2^8 = 256`` evaluations
  are the exact answer, so budgets above 256 are exact for methods that can enumerate.

For each method and budget (150, 450, 1,500 evaluations, endpoints included) the error is the RMSE
against the exact modes over all units and outputs, averaged over ``--seeds`` seeds; in brackets the share
of estimates within 3 standard errors of exact (calibration). Then the same on scalar projections (mean
over outputs for mlp and dcgan, the first language for moe) against shapiq's Shapley-value
approximators, which take a function of a bool coalition matrix (shapiq is a benchmark-only dependency:
``pip install 'msa-explorer[bench]'``).

Run: ``python -m bench.estimator_error [--seeds 10] [--games mlp dcgan moe]``
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from msa_core import lesion_game, per_class_accuracy, shapley_modes
from msa_core.estimators import METHODS, make_estimator
from msa_core.estimators.exact import all_coalitions
from msa_core.zoo import load_builtin

BUDGETS = (150, 450, 1500)
CACHE = Path(os.environ.get("MSA_BENCH_CACHE", "/tmp/msa-bench-cache"))


def gan_game(latents: int = 4):
    """dcgan-digits, players = the 16 channels of block net.2, value = ``latents`` generated images."""
    model, data = load_builtin("dcgan-digits")
    # the generator's body is an nn.Sequential: giving it the latents as (B, nz, 1, 1) lets the game
    # compute blocks net.0 and net.1 once instead of once per coalition (same values as the wrapper)
    z = torch.from_numpy(data["z"][:latents])[:, :, None, None]
    return lesion_game(model.net, "2", z), 16


def mlp_game():
    """mlp-digits, players = the 16 hidden units with the largest outgoing weight norms (others lesioned)."""
    model, data = load_builtin("mlp-digits")
    game = lesion_game(model, "1", torch.from_numpy(data["x"]), objective=per_class_accuracy(data["y"], 10))
    chosen = model[2].weight.norm(dim=0).topk(16).indices
    base = torch.zeros(game.n_players, dtype=torch.bool)

    def sub_game(coalitions: torch.Tensor) -> torch.Tensor:
        full = base.expand(coalitions.shape[0], -1).clone()
        full[:, chosen] = coalitions
        return game(full)

    return sub_game, 16


def moe_game():
    """moe-lm, players = the 8 experts, value = per-language scores on 60 words per language."""
    from msa_core.report import moe_game as build

    return build(60)[0], 8


class TableGame:
    """A game read from a table of all ``2^n`` coalitions (bit i of the row index = player i)."""

    def __init__(self, table: np.ndarray, n_players: int) -> None:
        self.table = torch.from_numpy(table)
        self.n_players = n_players
        self.powers = 2 ** torch.arange(n_players)

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        return self.table[(coalitions.long() * self.powers).sum(1)].to(torch.float64)

    def scalar(self, project: Callable[[torch.Tensor], torch.Tensor]) -> "TableGame":
        flat = self.table.reshape(self.table.shape[0], -1)
        parts = [project(flat[i : i + 4096].to(torch.float64)) for i in range(0, flat.shape[0], 4096)]
        return TableGame(torch.cat(parts).numpy(), self.n_players)


def tabulate(name: str, make: Callable, dtype=np.float64) -> TableGame:
    """Every coalition's value, computed once and cached in ``$MSA_BENCH_CACHE``."""
    path = CACHE / f"{name}.npy"
    game, n = make()
    if not path.exists():
        started = time.perf_counter()
        rows = []
        with torch.no_grad():
            for start in range(0, 2**n, 1024):
                rows.append(game(all_coalitions(n, start, min(2**n, start + 1024))).cpu().numpy().astype(dtype))
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, np.concatenate(rows))
        print(f"tabulated {name}: {2**n} coalitions in {time.perf_counter() - started:.0f} s")
    return TableGame(np.load(path), n)


def errors(game: TableGame, exact: torch.Tensor, method: str, budget: int, seeds: int) -> tuple[float, float, int]:
    """Mean RMSE over seeds, share within 3 stderr, evaluations spent."""
    rmse, covered, spent = [], [], 0
    for seed in range(seeds):
        result = shapley_modes(game, game.n_players, method=method, budget=budget, seed=seed)
        diff = result.values - exact
        rmse.append(float(diff.pow(2).mean().sqrt()))
        if result.stderr is not None:
            covered.append(float((diff.abs() <= 3 * result.stderr + 1e-9).double().mean()))
        spent = max(spent, result.n_evaluations)
    return float(np.mean(rmse)), float(np.mean(covered)) if covered else float("nan"), spent


def table(title: str, game: TableGame, methods: list[str], seeds: int) -> dict[int, dict[str, float]]:
    """Print a markdown table of RMSE per method and budget; returns ``{budget: {method: rmse}}``."""
    exact = shapley_modes(game, game.n_players, method="exact").values
    print(f"\n### {title}\n")
    print(f"RMSE against exact (mean of {seeds} seeds; lower is better); in brackets the share within 3 stderr.\n")
    print("| method | " + " | ".join(f"{b} evals" for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    found: dict[int, dict[str, float]] = {b: {} for b in BUDGETS}
    for method in methods:
        cells = []
        for budget in BUDGETS:
            if method == "exact" and 2**game.n_players > budget:
                cells.append("-")
                continue
            rmse, cover, spent = errors(game, exact, method, budget, seeds)
            found[budget][method] = rmse
            cells.append(f"{rmse:.5f} ({cover:.2f})" + ("" if spent <= budget else f" [{spent} evals]"))
        print(f"| {method} | " + " | ".join(cells) + " |")
    best = {b: min((v, m) for m, v in found[b].items() if m != "topk") for b in BUDGETS}
    print("| best / permutation | " + " | ".join(
        f"{best[b][0] / found[b]['permutation']:.2f} ({best[b][1]})" for b in BUDGETS) + " |")
    print("| auto picks | " + " | ".join(make_estimator("auto").choose(game.n_players, b, exact[0].numel()).name
                                        if "auto" in METHODS else "-" for b in BUDGETS) + " |")
    return found


def shapiq_table(title: str, game: TableGame, methods: list[str], seeds: int) -> None:
    """Scalar projection: our methods against shapiq's approximators, RMSE over players."""
    try:
        import shapiq
    except ImportError:
        print("\n(shapiq is not installed: pip install 'msa-explorer[bench]')")
        return
    warnings.filterwarnings("ignore")
    exact = shapley_modes(game, game.n_players, method="exact").values
    n = game.n_players

    def value_function(coalitions: np.ndarray) -> np.ndarray:
        matrix = np.atleast_2d(np.asarray(coalitions, dtype=bool))  # some approximators pass one coalition
        return game(torch.from_numpy(matrix)).numpy()

    rivals = {
        "shapiq KernelSHAP": lambda s: shapiq.KernelSHAP(n=n, random_state=s),
        "shapiq kADDSHAP": lambda s: shapiq.kADDSHAP(n=n, max_order=2, random_state=s),
        "shapiq UnbiasedKernelSHAP": lambda s: shapiq.UnbiasedKernelSHAP(n=n, random_state=s),
        "shapiq PermutationSamplingSV": lambda s: shapiq.PermutationSamplingSV(n=n, random_state=s),
        "shapiq SVARM": lambda s: shapiq.SVARM(n=n, random_state=s),
        "shapiq StratifiedSamplingSV": lambda s: shapiq.StratifiedSamplingSV(n=n, random_state=s),
        "shapiq OwenSamplingSV": lambda s: shapiq.OwenSamplingSV(n=n, random_state=s),
    }
    print(f"\n### {title} (scalar projection): ours vs shapiq\n")
    print("| method | " + " | ".join(f"{b} evals" for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    ours: dict[int, float] = {b: np.inf for b in BUDGETS}
    theirs: dict[int, float] = {b: np.inf for b in BUDGETS}
    for method in methods:
        row = []
        for budget in BUDGETS:
            if method == "exact" and 2**n > budget:
                row.append("-")
                continue
            rmse, _, _ = errors(game, exact, method, budget, seeds)
            if method != "topk":
                ours[budget] = min(ours[budget], rmse)
            row.append(f"{rmse:.5f}")
        print(f"| {method} | " + " | ".join(row) + " |")
    for name, build in rivals.items():
        row = []
        for budget in BUDGETS:
            rmse = []
            try:
                for seed in range(seeds):
                    values = build(seed).approximate(budget, value_function).get_n_order_values(1)
                    rmse.append(float(np.sqrt(np.mean((np.asarray(values) - exact.numpy()) ** 2))))
            except Exception as error:  # report it and go on with the other approximators
                row.append(f"failed: {type(error).__name__}")
                continue
            theirs[budget] = min(theirs[budget], float(np.mean(rmse)))
            row.append(f"{np.mean(rmse):.5f}")
        print(f"| {name} | " + " | ".join(row) + " |")
    print("| our best / shapiq's best | " + " | ".join(f"{ours[b] / theirs[b]:.2f}" for b in BUDGETS) + " |")


GAMES = {
    "mlp": ("mlp-digits, 16 hidden units, per-digit accuracy (10,)", mlp_game, lambda flat: flat.mean(1)),
    "dcgan": ("dcgan-digits, 16 channels of net.2, images", None, lambda flat: flat.mean(1)),
    "moe": ("moe-lm, 8 experts, per-language scores (5,)", moe_game, lambda flat: flat[:, 0]),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    parser.add_argument("--latents", type=int, default=4, help="dcgan latents (images) in the game's value")
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "exact"] + ["exact"])
    parser.add_argument("--no-shapiq", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: threads only contend on a shared machine
    for key in args.games:
        title, make, project = GAMES[key]
        if key == "dcgan":
            game = tabulate(f"dcgan-net2-{args.latents}", lambda: gan_game(args.latents), np.float32)
        else:
            game = tabulate(key, make)
        started = time.perf_counter()
        table(title, game, args.methods, args.seeds)
        if not args.no_shapiq:
            shapiq_table(title, game.scalar(project), args.methods, args.seeds)
        print(f"\n({key}: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
