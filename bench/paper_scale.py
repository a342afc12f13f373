"""Paper-scale games in bounded memory (issue 13): figures, not a timed test.

(a) ``linear``: a linear game with 1,987 players and outputs of shape (8, 3, 128, 128), whose values
    are built on the fly from rank-4 factors (``v(S) = sum_{i in S} w_i``, ``w = A @ B``): the exact
    Shapley modes are ``w_i``. Runs 2 permutations under ``--max-memory`` (default 4G) and prints peak
    RSS, wall time, disk used and the maximum error against ``w``.
(b) ``gan``: the paper's 128x128 DCGAN generator (``msa_core.zoo.paper_dcgan_generator``, seeded random
    weights), all 1,987 channels lesioned, a few latents and a few chain positions on this CPU:
    evaluations per second, peak memory, and the projected time of the paper's 3,000 permutations.

Each part runs in a child process bounded with ``RLIMIT_AS``. Run:
``python -m bench.paper_scale linear [--max-memory 4G]`` / ``python -m bench.paper_scale gan``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_PLAYERS = 1987
OUTPUT_SHAPE = (8, 3, 128, 128)
RANK = 4


def _peak_rss_bytes() -> int:
    # VmHWM is this process's own peak; ru_maxrss would carry the parent's peak across exec
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # no /proc: Linux kilobytes


def _vm_size() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def linear_factors(n_players: int, output_shape: tuple[int, ...], rank: int = RANK):
    """Seeded float64 factors ``A (n, rank)`` and ``B (rank, *output)`` of the modes ``w = A @ B``."""
    import torch

    generator = torch.Generator().manual_seed(13)
    a = torch.randn(n_players, rank, generator=generator, dtype=torch.float64)
    b = torch.randn(rank, *output_shape, generator=generator, dtype=torch.float64)
    return a, b


class LowRankLinearGame:
    """``v(S) = sum_{i in S} w_i`` with ``w = A @ B`` never materialised: ``(batch, n) -> (batch, *out)``."""

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b
        self.n_players = a.shape[0]

    def __call__(self, coalitions):
        weights = coalitions.to(self.a.dtype) @ self.a  # (batch, rank)
        return (weights @ self.b.reshape(self.b.shape[0], -1)).reshape(-1, *self.b.shape[1:])

    def exact(self, rows):
        """Exact modes of players ``rows``: ``(len(rows), *out)``."""
        return (self.a[rows] @ self.b.reshape(self.b.shape[0], -1)).reshape(-1, *self.b.shape[1:])


def run_linear(max_memory: str, n_permutations: int, scratch: Path, n_players: int, shape: tuple[int, ...],
               method: str = "permutation") -> dict:
    """Part (a) in this process with ``method`` (the budget of ``n_permutations`` join orders;
    truncated with tolerance 0, so that its values are exact too; topk's rounds of whole chains give
    every unit its exact mode as well); returns the figures."""
    import numpy as np
    import torch

    from msa_core import shapley_modes
    from msa_core.ondisk import is_on_disk

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    game = LowRankLinearGame(*linear_factors(n_players, shape))
    started = time.perf_counter()
    options = {"tolerance": 0.0} if method == "truncated" else None
    result = shapley_modes(game, n_players, method=method, n_permutations=n_permutations, seed=0,
                           max_memory=max_memory, scratch_dir=scratch, estimator_options=options)
    wall = time.perf_counter() - started
    values = result.values
    disk = sum(f.stat().st_blocks * 512 for f in scratch.rglob("*") if f.is_file())
    error = 0.0
    step = 64
    for start in range(0, n_players, step):
        rows = np.arange(start, min(n_players, start + step))
        got = values[rows] if is_on_disk(values) else values[start:start + step]
        error = max(error, float((got - game.exact(torch.from_numpy(rows))).abs().max()))
    t0 = time.perf_counter()
    one_mode = values[n_players // 2]
    open_ms = (time.perf_counter() - t0) * 1000
    return {"part": "linear", "method": method, "n_players": n_players, "output_shape": list(shape),
            "n_permutations": n_permutations, "max_memory": max_memory, "wall_s": round(wall, 1),
            "evaluations": result.n_evaluations, "peak_rss_gb": round(_peak_rss_bytes() / 2**30, 2),
            "disk_gb": round(disk / 2**30, 2), "max_abs_error": error,
            "result_gb_float64": round(2 * n_players * int(np.prod(shape)) * 8 / 2**30, 2),
            "memory_plan": result.metadata.get("memory"), "open_one_mode_ms": round(open_ms, 1),
            "mode_shape": list(one_mode.shape), "on_disk": is_on_disk(values),
            **({"topk_rounds": result.metadata["topk"]["rounds"],
                "topk_samples_per_unit": sorted(set(result.metadata["topk"]["samples_per_unit"]))}
               if method == "topk" else {})}


def run_gan(n_latents: int, positions: int, max_memory: str, n_permutations: int = 0) -> dict:
    """Part (b): throughput of the paper's generator game with all channels as players.

    ``n_permutations == 0`` times ``positions`` chain positions of one join order (one game call);
    ``n_permutations >= 1`` runs that many whole join orders through ``shapley_modes`` under
    ``max_memory`` (the streamed, bounded path a user's run takes) and reports its memory plan.
    """
    import torch

    from msa_core import lesion_game, shapley_modes
    from msa_core.zoo.paper_gan import HIDDEN_BLOCKS, PAPER_NZ, paper_dcgan_generator

    model = paper_dcgan_generator(seed=0)  # seeded random weights: throughput only
    latents = torch.randn(n_latents, PAPER_NZ, generator=torch.Generator().manual_seed(1))
    layers = [*HIDDEN_BLOCKS, "net.5"]  # 1,984 hidden channels and the 3 output channels
    game = lesion_game(model, layers, latents)
    n = int(game.n_players)
    figures: dict = {}
    with torch.no_grad():
        game(torch.ones(2, n, dtype=torch.bool))  # warm-up
        if n_permutations:
            started = time.perf_counter()
            result = shapley_modes(game, n, method="permutation", n_permutations=n_permutations,
                                   max_memory=max_memory, seed=0)
            wall = time.perf_counter() - started
            evaluations_timed = int(result.n_evaluations)
            figures.update({"n_permutations": n_permutations, "wall_s": round(wall, 1),
                            "memory_plan": result.metadata.get("memory"), "on_disk": bool(result.on_disk),
                            "efficiency_gap": float(result.efficiency_gap())})
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(2))
            position = torch.empty_like(order)
            position[order] = torch.arange(n)
            lengths = torch.linspace(1, n - 1, positions).round().to(torch.int64)
            coalitions = position.unsqueeze(0) < lengths.view(-1, 1)
            started = time.perf_counter()
            values = game(coalitions)
            wall = time.perf_counter() - started
            evaluations_timed = positions
    per_second = evaluations_timed / wall
    evaluations = 3000 * (n - 1)
    figures.update({"part": "gan", "n_players": n, "layers": layers, "n_latents": n_latents,
                    "output_shape": [n_latents, 3, 128, 128], "evaluations_timed": evaluations_timed,
                    "evaluations_per_s": round(per_second, 2),
                    "projected_3000_permutations_h_this_cpu": round(evaluations / per_second / 3600, 1),
                    "projected_3000_permutations_h_32_latents": round(evaluations / per_second * 32 / n_latents / 3600, 1),
                    "peak_rss_gb": round(_peak_rss_bytes() / 2**30, 2), "max_memory": max_memory})
    return figures


def _child(args: argparse.Namespace) -> None:
    limit = _vm_size() + int(args.address_space_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.part == "linear":
        scratch = Path(tempfile.mkdtemp(prefix="msa-paper-scale-", dir=args.scratch))
        try:
            shape = tuple(int(s) for s in args.shape.split(","))
            figures = run_linear(args.max_memory, args.permutations, scratch, args.players, shape, args.method)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    else:
        figures = run_gan(args.latents, args.positions, args.max_memory, args.gan_permutations)
    figures["address_space_limit_gb"] = round(limit / 2**30, 1)
    print("FIGURES " + json.dumps(figures), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["linear", "gan"])
    parser.add_argument("--max-memory", default="4G")
    parser.add_argument("--permutations", type=int, default=2)
    parser.add_argument("--players", type=int, default=N_PLAYERS)
    parser.add_argument("--method", default="permutation",
                        choices=["permutation", "antithetic", "truncated", "owen", "topk"],
                        help="linear: the sampling method (its budget: --permutations join orders)")
    parser.add_argument("--shape", default=",".join(map(str, OUTPUT_SHAPE)))
    parser.add_argument("--latents", type=int, default=2, help="latents of the GAN game on this CPU (paper: 32)")
    parser.add_argument("--positions", type=int, default=8, help="chain positions timed in the GAN game")
    parser.add_argument("--gan-permutations", type=int, default=0,
                        help="gan: whole join orders run through shapley_modes (0: time --positions positions)")
    parser.add_argument("--scratch", default=None, help="folder for on-disk accumulators (default: temp)")
    parser.add_argument("--address-space-gb", type=float, default=6.0,
                        help="RLIMIT_AS of the child: its address space after imports plus this")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch  # noqa: F401 - imported before the limit so its address space is the baseline

        _child(args)
        return
    command = [sys.executable, "-m", "bench.paper_scale", *(argv if argv is not None else sys.argv[1:]), "--child"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    for line in completed.stdout.splitlines():
        if line.startswith("FIGURES "):
            figures = json.loads(line[8:])
            figures["child_wall_s"] = round(time.perf_counter() - started, 1)
            print(json.dumps(figures, indent=2))
            return
    sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
    raise SystemExit(f"the child failed with exit status {completed.returncode}")


if __name__ == "__main__":
    main()
