"""Cost estimate against the real run: ``estimate_cost`` (timing a few real batches of the run's own game)
next to the wall time of ``execute`` on the built-ins. Prints a table; not a test.

    PYTHONPATH=. MSA_HOME=/tmp/msa-bench python bench/run_cost.py
"""

from __future__ import annotations

import tempfile
import time

import torch

from msa_core.runs import RunSpec, RunStore, estimate_cost, execute

SPECS = [
    RunSpec("mlp-digits", n_permutations=300),
    RunSpec("mlp-digits", method="owen", n_permutations=300),
    RunSpec("mlp-digits", method="topk", budget=20000, options={"k": 5}),
    RunSpec("dcgan-digits", preset="one block", n_permutations=20),
    RunSpec("moe-lm", method="antithetic", n_permutations=40),
]


def main() -> None:
    torch.set_num_threads(1)
    print("| run | evaluations | estimate (s) | estimate took (s) | real run (s) | in range |")
    print("|---|---|---|---|---|---|")
    for spec in SPECS:
        began = time.perf_counter()
        cost = estimate_cost(spec, probe_seconds=1.0)
        estimate_s = time.perf_counter() - began
        with tempfile.TemporaryDirectory() as root:
            began = time.perf_counter()
            record = execute(spec, RunStore(root))
            real = time.perf_counter() - began
        budget = f"budget={spec.budget}" if spec.budget else f"M={spec.n_permutations}"
        name = f"{spec.model} {spec.preset or ''} {spec.method} {budget}".replace("  ", " ")
        inside = cost["seconds_low"] <= real <= cost["seconds_high"]
        print(f"| {name} | {record.result.n_evaluations} (planned {cost['evaluations']}) | "
              f"{cost['seconds_low']:.2f}-{cost['seconds_high']:.2f} | {estimate_s:.2f} | {real:.2f} | "
              f"{'yes' if inside else 'no'} |")


if __name__ == "__main__":
    main()
