"""msa_core against msapy on the paper's MLP game, with the same permutations, for two objectives.

The game (Dixit et al. 2025): an MLP 784 -> 100 -> 10 with LeakyReLU, players = the 100 hidden units,
lesion = zero, value = the per-digit accuracy vector on 1024 inputs. Inputs are synthetic (seeded
Gaussian), labels are the intact model's predictions with 30% replaced at random, so accuracy starts
near 0.7 and falls as units are lesioned. Both sides evaluate the same join orders; msapy runs in its
eager mode (an exact reference for a permutation estimator on the same permutations).

msapy's objective is what a user writes for it: lesion the hidden units and run the model on the
inputs, one coalition per call, in float32 (the model's dtype). msa_core runs the same game twice:
with the built-in ``per_class_accuracy`` objective, and with the same per-digit accuracy written as a
plain Python callable on the logits (``per_digit_accuracy``: the msapy objective's expression, batched
over coalitions). Each repeat times all three back to back, so they share the machine's load; the
table gives the median over repeats and each objective's ratio against msapy's median.

In float32 the two sides sum the hidden units' contributions in different orders, so a logit within
rounding of a tie can decide differently and the modes may differ by ~1e-4 (one input of one digit at
one coalition); ``--dtype float64`` makes every decision the same and the modes agree to ~1e-15.

Run: ``python -m bench.msapy_speed [--permutations 100] [--repeats 3] [--dtype float32] [--threads N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import numpy as np
import torch
from torch import nn

from msa_core import lesion_game, per_class_accuracy, shapley_modes

N_INPUTS, N_HIDDEN, N_CLASSES = 1024, 100, 10


def paper_mlp(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """The model, inputs ``(1024, 784)`` and labels ``(1024,)``, all float64 and seeded."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, N_HIDDEN), nn.LeakyReLU(), nn.Linear(N_HIDDEN, N_CLASSES)).double().eval()
    inputs = torch.randn(N_INPUTS, 784, dtype=torch.float64)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    noisy = torch.rand(N_INPUTS) < 0.3
    labels[noisy] = torch.randint(0, N_CLASSES, (int(noisy.sum()),))
    return model, inputs, labels


def msapy_objective(model: nn.Sequential, inputs: torch.Tensor, labels: torch.Tensor):
    """The objective a msapy user writes: lesion the hidden units, run the model, score each digit."""
    onehot = np.eye(N_CLASSES)[labels.numpy()]
    counts = onehot.sum(0)

    def objective(lesioned: tuple) -> np.ndarray:
        with torch.no_grad():
            hidden = model[1](model[0](inputs))
            hidden[:, list(lesioned)] = 0.0
            logits = model[2](hidden).numpy()
        correct = logits[np.arange(N_INPUTS), labels.numpy()] >= logits.max(1)
        return (correct[:, None] * onehot).sum(0) / counts

    return objective


def run_msapy(objective, permutations: np.ndarray) -> tuple[np.ndarray, float]:
    from msapy import msa

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        table = msa.interface(
            n_permutations=len(permutations),
            elements=list(range(N_HIDDEN)),
            objective_function=objective,
            permutation_space=[tuple(int(u) for u in p) for p in permutations],
            lazy=False,
            n_parallel_games=1,
            dual_progress_bars=False,
        )
    elapsed = time.perf_counter() - started
    return np.asarray(table[list(range(N_HIDDEN))].to_numpy()).T, elapsed


def per_digit_accuracy(labels: torch.Tensor):
    """The callable a msa_core user writes: logits ``(coalitions, 1024, 10)`` -> ``(coalitions, 10)``."""
    onehot = torch.nn.functional.one_hot(labels, N_CLASSES).float()
    counts = onehot.sum(0)
    rows = labels.view(1, -1, 1)

    def per_digit(logits: torch.Tensor) -> torch.Tensor:
        correct = logits.gather(-1, rows.expand(logits.shape[0], -1, 1)).squeeze(-1) >= logits.amax(-1)
        return correct.to(onehot.dtype) @ onehot / counts

    return per_digit


class _Timed:
    """Wraps an objective and adds up the seconds spent inside it (for the breakdown)."""

    def __init__(self, function) -> None:
        self.function, self.seconds, self.calls, self.__name__ = function, 0.0, 0, "per_digit"

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        values = self.function(logits)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return values


def run_ours(model, inputs, objective, permutations: np.ndarray):
    """Build the game and estimate the modes on ``permutations``; the time includes building the game."""
    started = time.perf_counter()
    game = lesion_game(model, "1", inputs, objective=objective)
    result = shapley_modes(game, game.n_players, permutations=permutations)
    return result, time.perf_counter() - started, game.path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="msa_core vs msapy on the paper's MLP game")
    parser.add_argument("--permutations", type=int, nargs="+", default=[100])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each side (the median is shown)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (default: torch's); 1 is steadier on a loaded machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model, inputs, labels = paper_mlp()
    model, inputs = model.to(dtype), inputs.to(dtype)
    objective = msapy_objective(model, inputs, labels)
    builtin = per_class_accuracy(labels, N_CLASSES)
    callable_objective = per_digit_accuracy(labels)
    # compile (or load from numba's cache) the kernels once, as a long-lived process would have
    warmup = np.stack([np.random.default_rng(1).permutation(N_HIDDEN) for _ in range(2)])
    for warm in (builtin, callable_objective):
        _, compile_s, _ = run_ours(model, inputs, warm, warmup)
        print(f"warm-up (includes kernel compilation or cache load): {compile_s:.2f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; game: 784-100-10 MLP in {args.dtype}, "
          f"{N_INPUTS} inputs, per-digit accuracy, zero lesion; median of {args.repeats} repeats")
    for m in args.permutations:
        rng = np.random.default_rng(m)
        permutations = np.stack([rng.permutation(N_HIDDEN) for _ in range(m)])
        times: dict[str, list[float]] = {"msapy": [], "built-in": [], "callable": []}
        inside = []
        for repeat in range(args.repeats):
            theirs, theirs_s = run_msapy(objective, permutations)
            ours, ours_s, path = run_ours(model, inputs, builtin, permutations)
            timed = _Timed(callable_objective)
            custom, custom_s, _ = run_ours(model, inputs, timed, permutations)
            times["msapy"].append(theirs_s)
            times["built-in"].append(ours_s)
            times["callable"].append(custom_s)
            inside.append((timed.seconds, timed.calls))
            print(f"  repeat {repeat + 1}: msapy {theirs_s:.2f} s, built-in {ours_s:.3f} s, callable {custom_s:.3f} s "
                  f"(of which {timed.seconds:.3f} s inside the callable, {timed.calls} calls)", flush=True)
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{'permutations':>12} {'coalitions':>10} {'msapy s':>9} {'objective':>10} {'msa_core s':>10} "
              f"{'speed-up':>9} {'max |diff| to msapy':>20}")
        for name, result in (("built-in", ours), ("callable", custom)):
            diff = float(np.abs(result.values.numpy() - theirs).max())
            print(f"{m:>12} {result.n_evaluations:>10} {median['msapy']:9.2f} {name:>10} {median[name]:10.3f} "
                  f"{median['msapy'] / median[name]:8.0f}x {diff:20.2e}", flush=True)
        callable_s = statistics.median(seconds for seconds, _ in inside)
        print(f"  callable path: {callable_s:.3f} s of {median['callable']:.3f} s inside the user's callable; "
              f"built-in vs callable modes differ by {float((ours.values - custom.values).abs().max()):.1e}")
    print(f"(msa_core evaluation path: {path})")


if __name__ == "__main__":
    main()
