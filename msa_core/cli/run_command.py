"""``msa run MODEL ...``: compute the Shapley modes of a model's units (or fetch the stored run).

The arguments become one :class:`~msa_core.runs.RunSpec`; :func:`~msa_core.runs.resolve` loads the model
and checks layers, objective and device before any work; :func:`~msa_core.runs.execute` runs it into the
store (or the stored record is returned). A summary goes to stderr and the run id to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .base import (
    SUBCOMMAND_HELP,
    UsageError,
    _add_model_arguments,
    _check_inputs,
    _err,
    _model_ref,
    _out,
    _store,
    _table,
    _top_units,
    _with_inputs_hint,
)


def _method_help() -> str:
    from ..estimators import METHODS

    try:
        from ..estimators import METHOD_DESCRIPTIONS
    except ImportError:  # an estimators package without descriptions
        METHOD_DESCRIPTIONS = {}
    lines = [f"{name}: {METHOD_DESCRIPTIONS.get(name, '')}".rstrip(": ") for name in METHODS]
    return "estimator (default permutation). " + "; ".join(lines)


def _build_run(sub: Any) -> None:
    from ..estimators import METHODS

    parser = sub.add_parser("run", help=SUBCOMMAND_HELP["run"],
                            description="Compute the Shapley modes of a model's units (or fetch the stored run), "
                                        "print a summary on stderr and the run id on stdout.")
    _add_model_arguments(parser)
    parser.add_argument("--tasks", default=None, metavar="FILE",
                        help="task-battery file (YAML/JSON) for a language model; its content is part of the run key")
    parser.add_argument("--layer", action="append", dest="layers", metavar="PATH",
                        help="layer whose units are the players (repeat for several; default: the model's); "
                             "a preset name works too")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="a named unit selection of the model, e.g. 'hidden layer' (see `msa layers MODEL`)")
    parser.add_argument("--objective", help="objective name (default: the model's)")
    parser.add_argument("--lesion", choices=("zero", "mean", "skip"), default="zero",
                        help="how a lesioned unit is removed: set to zero, to its mean, or skipped (default zero)")
    parser.add_argument("--method", choices=list(METHODS), default="permutation", metavar="METHOD",
                        help=_method_help())
    parser.add_argument("--permutations", type=int, default=None, metavar="M",
                        help="sampling budget in permutations (default 100)")
    parser.add_argument("--budget", type=int, default=None, metavar="EVALUATIONS",
                        help="sampling budget in game evaluations (instead of --permutations)")
    parser.add_argument("--k", type=int, default=None, metavar="K",
                        help="how many top units to identify (method topk)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B",
                        help="coalitions per forward pass (default: automatic; does not change the result)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="bound on the run's working arrays, e.g. 4G (default: half the free memory; "
                             "not part of the run key)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: this process; ray: the game's evaluations on Ray workers (same values)")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    parser.add_argument("--ray-accumulate", choices=("auto", "workers", "driver"), default=None,
                        help="with --backend ray, where a sampling run's moments are summed: workers (each sends "
                             "its accumulators) or driver (workers send game values); default auto "
                             "($MSA_RAY_ACCUMULATE)")
    parser.add_argument("--ray-units-per-task", type=int, default=None, metavar="R",
                        help="with --ray-accumulate workers: join orders per worker per round")
    parser.add_argument("--label", default="", help="a human label for the run")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="units shown in the summary (default 5)")
    parser.add_argument("--no-cache", action="store_true", help="recompute and replace the stored run")
    parser.add_argument("--out", default=None, metavar="FILE.npz", help="also write the result to this .npz file")
    parser.set_defaults(func=_cmd_run)


def _check_out(path: str | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"--out must name a .npz file; got {path!r}")
    if not out.parent.exists():
        raise UsageError(f"--out: folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise UsageError(f"--out: {path!r} is a folder")
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"--out: cannot write into {str(out.parent)!r}")
    return out


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be a positive integer; got {value}")


def _ray_options(args: argparse.Namespace) -> dict | None:
    """``execute``'s ``ray_options`` from the Ray flags (None when none is given)."""
    options = {"accumulate": args.ray_accumulate, "units_per_task": args.ray_units_per_task}
    options = {name: value for name, value in options.items() if value is not None}
    return options or None


def _cmd_run(args: argparse.Namespace) -> int:
    from ..runs import RunSpec, execute, resolve
    from ..runs.execute import plan

    for value, flag in ((args.permutations, "--permutations"), (args.budget, "--budget"), (args.k, "--k"),
                        (args.batch_size, "--batch-size"), (args.top, "--top")):
        _positive(value, flag)
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.permutations is not None and args.budget is not None:
        raise UsageError("give --permutations or --budget, not both")
    if args.preset is not None and args.layers:
        raise UsageError("give --layer or --preset, not both")
    _positive(args.ray_units_per_task, "--ray-units-per-task")
    for value, flag in ((args.address, "--address"), (args.ray_accumulate, "--ray-accumulate"),
                        (args.ray_units_per_task, "--ray-units-per-task")):
        if value is not None and args.backend != "ray":
            raise UsageError(f"{flag} is only used with --backend ray")
    out = _check_out(args.out)
    inputs = _check_inputs(args.inputs)
    tasks = _check_inputs(args.tasks, "--tasks", "a task-battery file")
    spec = RunSpec(
        model=_model_ref(args.model),
        inputs=inputs,
        tasks=tasks,
        units=tuple(args.layers) if args.layers else None,
        preset=args.preset,
        objective=args.objective,
        lesion=args.lesion,
        method=args.method,
        n_permutations=args.permutations or 100,
        budget=args.budget,
        options={"k": args.k} if args.k is not None else {},
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        label=args.label,
    )
    try:
        resolved = resolve(spec)  # loads the model; bad layer/objective/device fail here, before any work
    except ValueError as error:
        raise _with_inputs_hint(error) from None
    store = _store()
    found = None if args.no_cache else store.get_exact(resolved.key)
    if found is not None:
        record = found
        _err(f"found in the store: {record.spec.model} {record.params.get('units_text', '')} "
             f"({record.params.get('n_evaluations', '?')} evaluations, computed in {record.elapsed_s:.1f} s)")
    else:
        game = resolved.game()  # raises (exit 2) on a bad layer, objective or device before any work
        cost = plan(spec, resolved, game)
        if resolved.key in store.checkpoints() and not args.no_cache:
            _err("resuming from a checkpoint")
        from tqdm import tqdm

        bar = tqdm(total=cost["evaluations"], unit="eval", desc=f"{args.method} {game.n_players} units",
                   file=sys.stderr, disable=None, dynamic_ncols=True, smoothing=0.1)

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            record = execute(spec, store, progress=progress, refresh=args.no_cache, backend=args.backend,
                             address=args.address, resolved=resolved, max_memory=args.max_memory,
                             ray_options=_ray_options(args))
        finally:
            bar.close()
        p = record.params
        _err(f"computed {p['n_players']} units x {p['n_evaluations']} evaluations in {record.elapsed_s:.1f} s"
             + (f" (resumed after {p['resumed_evaluations']} evaluations)" if p.get("resumed_evaluations") else ""))
    if out is not None:
        record.result.save(out)  # atomic: a temporary file renamed into place
        _err(f"wrote {out}")
    _err(_summary(record, args.top))
    _out(record.id)
    return 0


def _summary(record: Any, count: int) -> str:
    """The end of ``msa run``: units, evaluations, efficiency gap, the top units, the command to see more."""
    result = record.result
    lines = [
        f"units       {record.params.get('units_text', '')} ({result.n_players} players)",
        f"method      {record.spec.method}, {result.n_evaluations} evaluations",
        f"efficiency  |sum(values) - (intact - empty)| = {result.efficiency_gap():.3g}",
        f"top {min(count, result.n_players)} units by |total contribution| (stderr: norm over outputs):",
        _table(_top_units(result, count), ["unit", "total", "stderr"]),
        f"more: msa runs show {record.short_id}",
    ]
    return "\n".join(lines)
