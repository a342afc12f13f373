"""Bytes a Ray run returns to the driver per join order: samples (driver mode) against moments (workers mode).

Game: a recipe generator, ``Linear(8, players) -> Tanh -> Linear(players, 3 x side x side)`` with seeded
random weights on ``--latents`` fixed latents (the hidden Tanh units are the players, the images the
output: ``latents x 3 x side x side`` values per coalition, like a small version of the paper's GAN game).
The same run (permutation sampling, same seed) goes through a local Ray of ``--workers`` CPUs twice:
``accumulate="driver"`` (workers return every coalition's values) and ``accumulate="workers"``
(workers return mean and m2 of their units, ``units_per_task`` join orders each). The script prints the
bytes of arrays returned to the driver per join order in each mode, their ratio, each wall time and the
largest difference between the two runs' values. With ``--max-memory`` (default 32MB, below what the
moments need) a third run, ``accumulate="workers"`` under that bound, keeps the moments on disk
(workers write them to the run's parts folder and return its path; the driver merges row ranges): the
script prints its bytes returned (none: paths only), the largest block the driver read at once against
the moments' size, its wall time and its largest difference from the local run under the same bound.

Expected ratio: ``R x (n - 1) x itemsize / (16 n)`` (``R`` units per task, ``itemsize`` 4 for a float32
game): about ``R / 4``.

Run: ``python -m bench.ray_accumulate [--players 64] [--side 32] [--latents 4] [--permutations 64]
[--workers 2] [--units-per-task 16] [--max-memory 32MB]``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, {players}), nn.Tanh(), nn.Linear({players}, 3 * {side} * {side}),
                              nn.Unflatten(1, (3, {side}, {side})))
        return {{"model": model, "inputs": torch.randn({latents}, 8), "default_units": ["1"]}}
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=64)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--latents", type=int, default=4)
    parser.add_argument("--permutations", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--units-per-task", type=int, default=16)
    parser.add_argument("--max-memory", default="32MB", help="bound of the on-disk run ('' skips it)")
    args = parser.parse_args()

    import ray

    from msa_core.runs import RunSpec, RunStore, execute

    folder = Path(tempfile.mkdtemp(prefix="msa-bench-ray-"))
    (folder / "recipe.py").write_text(RECIPE.format(players=args.players, side=args.side, latents=args.latents))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    spec = RunSpec(f"{folder / 'recipe.py'}:make", method="permutation", n_permutations=args.permutations, seed=0)
    output = args.latents * 3 * args.side * args.side
    print(f"game: {args.players} players, {output} outputs per coalition, {args.permutations} join orders, "
          f"{args.workers} workers")
    runs = {}
    for mode in ("driver", "workers"):
        options = {"accumulate": mode, "workers": args.workers, "units_per_task": args.units_per_task}
        execute(spec.replace(seed=1, n_permutations=args.workers), RunStore(folder / f"warm-{mode}"),
                backend="ray", ray_options=options)  # workers load the model once, outside the timing
        began = time.perf_counter()
        record = execute(spec, RunStore(folder / mode), backend="ray", ray_options=options)
        seconds = time.perf_counter() - began
        info = record.result.metadata["ray"]
        assert info["accumulate"]["mode"] == mode, info["accumulate"]
        per_order = info["bytes_returned"] / args.permutations
        runs[mode] = (record, per_order)
        print(f"{mode:>8}: {per_order / 2**20:9.3f} MB returned per join order "
              f"({info['bytes_returned'] / 2**20:.1f} MB in {info['tasks']} tasks), wall {seconds:.2f} s")
    if args.max_memory:
        on_disk(spec, folder, args, runs["driver"][0], output)
    ratio = runs["driver"][1] / runs["workers"][1]
    difference = float((runs["driver"][0].result.values - runs["workers"][0].result.values).abs().max())
    expected = args.units_per_task * (args.players - 1) * 4 / (16 * args.players)
    print(f"ratio driver / workers: {ratio:.1f}x (expected about {expected:.1f}x); "
          f"max |values difference| {difference:.2e}; evaluations equal: "
          f"{runs['driver'][0].result.n_evaluations == runs['workers'][0].result.n_evaluations}")
    ray.shutdown()


def on_disk(spec, folder: Path, args: argparse.Namespace, driver: Any, output: int) -> None:
    """The workers mode under ``--max-memory``: moments on disk at both ends; figures printed."""
    from msa_core.ondisk import ChunkedArray
    from msa_core.runs import RunStore, execute

    reads = []
    original = ChunkedArray.read_rows

    def read_rows(self, rows):  # the driver's reads (the workers are other processes)
        data = original(self, rows)
        reads.append(data.nbytes)
        return data

    options = {"accumulate": "workers", "workers": args.workers, "units_per_task": args.units_per_task}
    ChunkedArray.read_rows = read_rows
    try:
        began = time.perf_counter()
        record = execute(spec, RunStore(folder / "disk"), backend="ray", ray_options=options,
                         max_memory=args.max_memory)
        seconds = time.perf_counter() - began
    finally:
        ChunkedArray.read_rows = original
    local = execute(spec, RunStore(folder / "local-disk"), max_memory=args.max_memory).result
    info = record.result.metadata["ray"]
    assert info["accumulate"]["on_disk"], info["accumulate"]
    moment = args.players * output * 8
    difference = float(abs(record.result.values.numpy() - local.values.numpy()).max())
    print(f"    disk: {info['bytes_returned'] / args.permutations / 2**20:9.3f} MB returned per join order "
          f"({info['bytes_returned']} bytes in {info['tasks']} tasks: the endpoints), wall {seconds:.2f} s; driver "
          f"read at most {max(reads) / 2**20:.2f} MB at once (one moment: {moment / 2**20:.1f} MB, "
          f"max_memory {args.max_memory}); max |values - local bounded run| {difference:.2e}; against the driver "
          f"mode {float(abs(record.result.values.numpy() - driver.result.values.numpy()).max()):.2e}")


if __name__ == "__main__":
    main()
