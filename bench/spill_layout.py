"""The spill's file layout under a tight bound: figures, not a test.

A tight ``max_memory`` solves a regression's spilled game values one output column at a time. Its
files used to be one column wide as well (every evaluated block then opened one file per output) and
its on-disk result was written a solve chunk at a time (each write maps every chunk file of the
result). This runs the same bounded run twice in child processes (address space capped, one torch
thread, no checkpoints): with the layout of :func:`msa_core.bounded_linear.spill_width` and
:func:`~msa_core.bounded_linear.result_run`, and with both forced back to the solve width (the
baseline), and prints the seconds, their ratio and the largest difference of the values.

``python -m bench.spill_layout [--model dcgan-digits] [--method kernel] [--budget 64] [--max-memory 4MB]``
(on one CPU thread: about 40 s, and about 380 s for the baseline).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
    import numpy as np, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {root!r})
    import msa_core.bounded_linear as bounded_linear
    from msa_core.estimators import shapley_modes
    from msa_core.runs import RunSpec
    from msa_core.runs.spec import resolve
    if {baseline}:  # the layout before: files and result writes one solve chunk wide
        bounded_linear.spill_width = lambda plan, rows, outputs: plan.width
        bounded_linear.result_run = lambda plan, n_players, stderr: plan.width
    game = resolve(RunSpec({model!r}, method={method!r}, budget={budget})).game()
    started = time.perf_counter()
    result = shapley_modes(game, game.n_players, method={method!r}, budget={budget}, max_memory={bound!r},
                           scratch_dir={scratch!r})
    seconds = time.perf_counter() - started
    values = result.values.to_tensor() if result.on_disk else result.values
    np.save({out!r}, values.numpy())
    print(json.dumps({{"seconds": seconds, "memory": result.metadata.get("memory")}}))
""")


def _run(args: argparse.Namespace, baseline: bool, folder: Path) -> tuple[dict, Path]:
    out = folder / f"values-{int(baseline)}.npy"
    code = CHILD.format(root=str(ROOT), baseline=baseline, model=args.model, method=args.method, budget=args.budget,
                        bound=args.max_memory, scratch=str(folder), out=str(out))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.timeout)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1]), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="dcgan-digits")
    parser.add_argument("--method", default="kernel")
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--max-memory", default="4MB")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="msa-spill-bench-") as scratch:
        folder = Path(scratch)
        now, now_values = _run(args, False, folder)
        print(f"layout now: {now['seconds']:.1f} s  {now['memory']}", flush=True)
        before, before_values = _run(args, True, folder)
        print(f"baseline (one solve chunk wide): {before['seconds']:.1f} s", flush=True)
        difference = float(np.abs(np.load(now_values) - np.load(before_values)).max())
    print(f"speed-up {before['seconds'] / now['seconds']:.1f}x; largest value difference {difference:.3g}")


if __name__ == "__main__":
    main()
