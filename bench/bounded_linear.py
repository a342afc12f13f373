"""Linear estimators (exact, kernel, leverage, kadd, regression_mc) in bounded memory: figures, not a test.

A linear game built on the fly from low-rank factors (exact values known), run twice in child
processes: unbounded (the in-memory path) and under ``--max-memory`` (game values spilled to disk,
solved by output column chunks; the child's address space is capped so that the in-memory path
could not run). Prints peak RSS (VmHWM), wall time, disk used, the maximum error against the exact
values and against the unbounded run, and the ratios.

``python -m bench.bounded_linear [--method kernel] [--players 200] [--shape 8,3,32,32] [--budget 4000]
[--max-memory 256MB] [--no-baseline]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    sys.path.insert(0, {root!r})
    from bench.paper_scale import LowRankLinearGame, linear_factors
    from msa_core import shapley_modes
    from msa_core.ondisk import is_on_disk
    def status(key):
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
    n, shape, bound = {players}, {shape}, {bound!r}
    game = LowRankLinearGame(*linear_factors(n, shape))
    if {limit}:
        limit = status("VmSize") + {limit}
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    baseline = status("VmRSS")
    started = time.perf_counter()
    result = shapley_modes(game, n, method={method!r}, budget={budget}, seed=0, max_memory=bound,
                           scratch_dir={scratch!r})
    wall = time.perf_counter() - started
    peak = status("VmHWM")
    error, rows = 0.0, []
    for start in range(0, n, 16):
        index = np.arange(start, min(n, start + 16))
        got = result.values[index] if is_on_disk(result.values) else result.values[start:start + 16]
        error = max(error, float((got - game.exact(torch.from_numpy(index))).abs().max()))
    np.save({out!r}, (result.values.to_tensor() if is_on_disk(result.values) else result.values).numpy()[:4])
    print(json.dumps({{"wall_s": round(wall, 2), "peak_minus_baseline_mb": round((peak - baseline) / 2**20, 1),
                      "peak_rss_mb": round(peak / 2**20, 1), "max_abs_error": error,
                      "evaluations": result.n_evaluations, "memory": result.metadata.get("memory")}}))
""")


def _child(args: argparse.Namespace, bound: str, limit: int, scratch: Path, out: Path) -> dict:
    root = str(Path(__file__).resolve().parent.parent)
    shape = tuple(int(s) for s in args.shape.split(","))
    code = CHILD.format(root=root, players=args.players, shape=shape, bound=bound, limit=limit, method=args.method,
                        budget=args.budget, scratch=str(scratch), out=str(out))
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise SystemExit(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _disk_peak_note(scratch: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in scratch.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="kernel")
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--shape", default="8,3,32,32")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--max-memory", default="256MB")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbounded run (too large to fit)")
    args = parser.parse_args()
    from msa_core.memory import parse_memory

    bound = parse_memory(args.max_memory)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        bounded = _child(args, args.max_memory, 3 * bound, scratch / "b", scratch / "bounded.npy")
        kept = _disk_peak_note(scratch / "b")
        if args.no_baseline:
            print(json.dumps({"bounded": bounded}, indent=1))
            return
        unbounded = _child(args, "64GB", 0, scratch / "a", scratch / "unbounded.npy")
        import numpy as np

        difference = float(np.abs(np.load(scratch / "unbounded.npy") - np.load(scratch / "bounded.npy")).max())
    print(json.dumps({"unbounded": unbounded, "bounded": bounded}, indent=1))
    spill_gb = bounded["memory"]["disk_bytes"] / 2**30
    print(f"\n{args.method}, {args.players} players, outputs ({args.shape}), budget {args.budget}, "
          f"max_memory {args.max_memory}:")
    print(f"  peak RSS over baseline: unbounded {unbounded['peak_minus_baseline_mb']} MB, bounded "
          f"{bounded['peak_minus_baseline_mb']} MB (ratio {bounded['peak_minus_baseline_mb'] / max(1e-9, unbounded['peak_minus_baseline_mb']):.2f})")
    print(f"  wall: unbounded {unbounded['wall_s']} s, bounded {bounded['wall_s']} s "
          f"(ratio {bounded['wall_s'] / max(1e-9, unbounded['wall_s']):.2f})")
    print(f"  disk: {spill_gb:.2f} GiB spilled (deleted at the end; {kept / 2**20:.1f} MB kept: on-disk result)")
    print(f"  max abs error vs exact: unbounded {unbounded['max_abs_error']:.2e}, bounded {bounded['max_abs_error']:.2e}; "
          f"bounded vs unbounded (4 modes): {difference:.2e}")


if __name__ == "__main__":
    main()
