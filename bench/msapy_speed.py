"""msa_core against msapy on the paper's MLP game, with the same permutations.

The game (Dixit et al. 2025): an MLP 784 -> 100 -> 10 with LeakyReLU, players = the 100 hidden units,
lesion = zero, value = the per-digit accuracy vector on 1024 inputs. Inputs are synthetic (seeded
Gaussian), labels are the intact model's predictions with 30% replaced at random, so accuracy starts
near 0.7 and falls as units are lesioned. Both sides evaluate the same join orders; msapy runs in its
eager mode (an exact reference for a permutation estimator on the same permutations).

msapy's objective is what a user writes for it: lesion the hidden units and run the model on the
inputs, one coalition per call. Both sides compute in float64, so the logits agree to ~1e-15 and the
per-digit accuracies (argmax decisions) are identical: the modes must then agree to 1e-6.

Run: ``python -m bench.msapy_speed [--permutations 100 1000]``. Prints wall times, their ratio and the
largest difference between the modes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def run_ours(model, inputs, labels, permutations: np.ndarray, dtype=torch.float64):
    started = time.perf_counter()
    game = lesion_game(model.to(dtype), "1", inputs.to(dtype), objective=per_class_accuracy(labels, N_CLASSES))
    result = shapley_modes(game, game.n_players, permutations=permutations)
    return result, time.perf_counter() - started, game.path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="msa_core vs msapy on the paper's MLP game")
    parser.add_argument("--permutations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--skip-msapy-above", type=int, default=10_000,
                        help="skip msapy for budgets above this (it runs one coalition per call)")
    args = parser.parse_args(argv)
    model, inputs, labels = paper_mlp()
    objective = msapy_objective(model, inputs, labels)
    # compile (or load from numba's cache) the fused kernel once, as a long-lived process would have
    warmup = np.stack([np.random.default_rng(1).permutation(N_HIDDEN) for _ in range(2)])
    for dtype in (torch.float64, torch.float32):
        _, compile_s, _ = run_ours(model, inputs, labels, warmup, dtype=dtype)
        print(f"warm-up ({dtype}, includes kernel compilation or cache load): {compile_s:.2f} s")
    model.double()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; game: 784-100-10 MLP, "
          f"{N_INPUTS} inputs, per-digit accuracy, zero lesion")
    print(f"{'permutations':>12} {'coalitions':>10} {'msapy s':>9} {'msa_core s':>10} {'f32 s':>7} "
          f"{'speed-up':>9} {'max |diff|':>11}")
    for m in args.permutations:
        rng = np.random.default_rng(m)
        permutations = np.stack([rng.permutation(N_HIDDEN) for _ in range(m)])
        ours, ours_s, path = run_ours(model, inputs, labels, permutations)
        _, ours32_s, _ = run_ours(model, inputs, labels, permutations, dtype=torch.float32)
        model.double()
        if m <= args.skip_msapy_above:
            theirs, theirs_s = run_msapy(objective, permutations)
            diff = float(np.abs(ours.values.numpy() - theirs).max())
            ratio = f"{theirs_s / ours_s:8.0f}x"
            theirs_text = f"{theirs_s:9.2f}"
        else:
            diff, ratio, theirs_text = float("nan"), "      n/a", "  skipped"
        print(f"{m:>12} {ours.n_evaluations:>10} {theirs_text} {ours_s:10.3f} {ours32_s:7.3f} {ratio} {diff:11.2e}",
              flush=True)
    print(f"(msa_core evaluation path: {path}; 'f32 s' is msa_core in float32, not compared with msapy)")


if __name__ == "__main__":
    main()
