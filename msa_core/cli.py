"""The ``msa`` command: built-in models, layer catalogues, cached runs, and the run store.

::

    msa models                          # built-in models with one-line descriptions
    msa layers MODEL [--inputs FILE]    # lesionable layers: path, unit kind, count, output shape
    msa run MODEL [--inputs FILE] [--tasks FILE] [--layer PATH ... | --preset NAME] [--objective NAME]
            [--lesion zero|mean|skip] [--method METHOD] [--permutations M | --budget EVALUATIONS] [--k K]
            [--seed S] [--device cpu|cuda] [--backend local|ray] [--address ADDR] [--no-cache] [--out FILE.npz]
    msa runs list | show ID | export ID FILE | delete ID | import FILE

``--inputs FILE``: example inputs (a ``.npz`` with ``x`` or ``inputs``, and optionally ``labels``/``y``
for a per-class accuracy objective, or a ``.pt`` tensor file); a TorchScript ``.pt`` model needs it.
The spec keeps the file's absolute path; the run key depends on its content, not on its path.

Runs live in the store under ``$MSA_HOME`` (or the user cache directory), shared with the app. Bad
arguments print one line ``msa: error: ...`` and exit with status 2; nothing is half-written.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> builder taking the argparse subparsers);
add one with :func:`register_subcommand`. Only the subcommand being run is built, so ``msa --help``
imports neither torch nor the estimators (it answers in well under a second).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["main", "SUBCOMMANDS", "register_subcommand", "UsageError"]


class UsageError(Exception):
    """A bad argument or input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2 (argparse prints usage too)
        raise UsageError(message)


SubcommandBuilder = Callable[[Any], None]
SUBCOMMANDS: dict[str, SubcommandBuilder] = {}
"""Subcommand name -> ``builder(subparsers)`` that adds its parser and sets ``func=handler(args) -> int``."""
SUBCOMMAND_HELP: dict[str, str] = {}
"""Subcommand name -> one-line help, shown by ``msa --help`` without building the subcommand."""


def register_subcommand(name: str, builder: SubcommandBuilder, help: str | None = None) -> None:
    """Add (or replace) a subcommand: ``builder(subparsers)`` must call ``subparsers.add_parser(name, ...)``
    and ``set_defaults(func=handler)`` where ``handler(args) -> int`` returns the exit status. With
    ``help`` the builder runs only when that subcommand is used (keeps ``msa --help`` fast)."""
    SUBCOMMANDS[name] = builder
    if help is None:
        SUBCOMMAND_HELP.pop(name, None)
    else:
        SUBCOMMAND_HELP[name] = help


def _out(line: str = "") -> None:
    print(line, file=sys.stdout, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _store() -> Any:
    from .runs import RunStore

    return RunStore()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- models
def _build_models(sub: Any) -> None:
    parser = sub.add_parser("models", help=SUBCOMMAND_HELP["models"])
    parser.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from .runs import list_builtins

    builtins = list_builtins()
    width = max((len(name) for name, _ in builtins), default=0)
    for name, description in builtins:
        _out(f"{name.ljust(width)}  {description}")
    return 0


# ---------------------------------------------------------------------------------------- layers
def _add_model_arguments(parser: Any) -> None:
    """MODEL and --inputs, shared by the commands that load a model."""
    parser.add_argument("model", help="built-in name, model file, recipe (module:function or file.py:function)")
    parser.add_argument("--inputs", default=None, metavar="FILE",
                        help="example inputs: .npz (x, optional labels) or .pt tensor file; needed by TorchScript .pt models")


def _build_layers(sub: Any) -> None:
    parser = sub.add_parser("layers", help=SUBCOMMAND_HELP["layers"])
    _add_model_arguments(parser)
    parser.set_defaults(func=_cmd_layers)


def _cmd_layers(args: argparse.Namespace) -> int:
    inputs = _check_inputs(args.inputs)
    subject = _load_subject(args.model, inputs)
    defaults = {u if isinstance(u, str) else getattr(u, "path", "") for u in subject.default_units}
    rows = [
        [layer.path + (" *" if layer.path in defaults else ""), layer.unit_kind, str(layer.n_units),
         "x".join(str(d) for d in layer.output_shape) or "()", layer.module_type]
        for layer in subject.layers
    ]
    _out(_table(rows, ["path", "units", "count", "output shape", "module"]))
    _out("(* = default units)")
    return 0


# ---------------------------------------------------------------------------------------- run
def _method_help() -> str:
    from .estimators import METHODS

    try:
        from .estimators import METHOD_DESCRIPTIONS
    except ImportError:  # an estimators package without descriptions
        METHOD_DESCRIPTIONS = {}
    lines = [f"{name}: {METHOD_DESCRIPTIONS.get(name, '')}".rstrip(": ") for name in METHODS]
    return "estimator (default permutation). " + "; ".join(lines)


def _build_run(sub: Any) -> None:
    from .estimators import METHODS

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
    parser.add_argument("--label", default="", help="a human label for the run")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="units shown in the summary (default 5)")
    parser.add_argument("--no-cache", action="store_true", help="recompute and replace the stored run")
    parser.add_argument("--out", default=None, metavar="FILE.npz", help="also write the result to this .npz file")
    parser.set_defaults(func=_cmd_run)


def _check_inputs(path: str | None, flag: str = "--inputs", what: str = "a .npz or .pt tensor file") -> str | None:
    """``--inputs`` (or ``--tasks``): None, or the file's absolute path (so the app and later commands run
    from another folder find it); a missing file is a usage error before anything is loaded."""
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        where = "a folder" if file.is_dir() else "no file"
        raise UsageError(f"{flag}: {where} at {str(file)!r} (give {what})")
    return str(file.resolve())


def _model_ref(model: str) -> str:
    """A model file or folder given by a relative path becomes absolute in the spec (so the app, Ray
    workers and later commands run from another folder find it); names and recipes stay as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _with_inputs_hint(error: Exception) -> Exception:
    """The loader's "needs example inputs: pass inputs=..." message, pointed at the CLI's flag."""
    message = " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())
    if "needs example inputs" in message or "saved no example inputs" in message:
        return UsageError(f"{message} (use --inputs FILE)")
    return error


def _load_subject(model: str, inputs: str | None) -> Any:
    from .runs import load_subject

    try:
        return load_subject(model, inputs=inputs)
    except ValueError as error:
        raise _with_inputs_hint(error) from None


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


def _cmd_run(args: argparse.Namespace) -> int:
    from .runs import RunSpec, execute, resolve
    from .runs.execute import plan

    for value, flag in ((args.permutations, "--permutations"), (args.budget, "--budget"), (args.k, "--k"),
                        (args.batch_size, "--batch-size"), (args.top, "--top")):
        _positive(value, flag)
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.permutations is not None and args.budget is not None:
        raise UsageError("give --permutations or --budget, not both")
    if args.preset is not None and args.layers:
        raise UsageError("give --layer or --preset, not both")
    if args.address and args.backend != "ray":
        raise UsageError("--address is only used with --backend ray")
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
                             address=args.address, resolved=resolved, max_memory=args.max_memory)
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


def _top_units(result: Any, count: int) -> list[list[str]]:
    """Rows ``[unit, total, stderr]`` of the ``count`` units with the largest |total contribution|."""
    total = result.total_contribution()
    order = total.abs().argsort(descending=True)[:count].tolist()
    stderr = result.stderr.reshape(result.n_players, -1).norm(dim=1) if result.stderr is not None else None
    return [[result.unit_labels[i], f"{float(total[i]):+.4f}", "-" if stderr is None else f"{float(stderr[i]):.4f}"]
            for i in order]


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


# ---------------------------------------------------------------------------------------- runs
def _build_runs(sub: Any) -> None:
    parser = sub.add_parser("runs", help=SUBCOMMAND_HELP["runs"])
    runs = parser.add_subparsers(dest="runs_command", metavar="{list,show,export,import,delete}",
                                 help="what to do with the store")
    runs.required = True
    runs.add_parser("list", help="list stored runs").set_defaults(func=_cmd_runs_list)
    show = runs.add_parser("show", help="show one run")
    show.add_argument("id", help="run id (or a unique prefix of at least 4 characters)")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.set_defaults(func=_cmd_runs_show)
    export = runs.add_parser("export", help="write a run to FILE (.npz, .csv or .parquet)")
    export.add_argument("id", help="run id (or a unique prefix)")
    export.add_argument("file", help="output file: .npz (everything), .csv or .parquet (values table)")
    export.set_defaults(func=_cmd_runs_export)
    imp = runs.add_parser("import", help="import a run from an .npz file")
    imp.add_argument("file", help="an .npz written by `msa runs export` or `msa run --out`")
    imp.set_defaults(func=_cmd_runs_import)
    delete = runs.add_parser("delete", help="delete a run")
    delete.add_argument("id", help="run id (or a unique prefix)")
    delete.set_defaults(func=_cmd_runs_delete)


def _record_or_fail(store: Any, run_id: str) -> Any:
    from .runs import RunNotFound

    try:
        full = store.resolve_id(run_id)
    except RunNotFound as error:
        raise UsageError(str(error)) from None
    return store.get_exact(full)


def _cmd_runs_list(args: argparse.Namespace) -> int:
    store = _store()
    records = store.list()
    if not records:
        _out(f"no runs in {store.root}")
        return 0
    rows = []
    for r in records:
        p = r.params
        rows.append([
            r.short_id, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)), r.spec.model,
            str(p.get("units_text", "")), str(p.get("objective", r.spec.objective or "")), r.spec.method,
            str(r.spec.n_permutations if r.spec.method != "exact" else "-"), str(r.spec.seed),
            str(p.get("n_players", "")), f"{r.elapsed_s:.1f}s", r.label,
        ])
    _out(_table(rows, ["id", "created", "model", "units", "objective", "method", "M", "seed", "n", "time", "label"]))
    return 0


def _cmd_runs_show(args: argparse.Namespace) -> int:
    store = _store()
    record = _record_or_fail(store, args.id)
    if args.json:
        _out(json.dumps(record.to_json(), indent=2, default=str))
        return 0
    result = record.result
    p = record.params
    lines = [
        f"id          {record.id}",
        f"label       {record.label}",
        f"created     {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.created))}",
        f"model       {record.spec.model}",
        *([f"inputs      {record.spec.inputs}"] if record.spec.inputs else []),
        f"units       {p.get('units_text', '')} ({result.n_players} players)",
        f"objective   {p.get('objective', '')}",
        f"lesion      {record.spec.lesion}",
        f"method      {record.spec.method}, {result.n_samples} samples, seed {record.spec.seed}"
        + (f", options {record.spec.options_dict}" if record.spec.options else ""),
        *([f"preset      {record.spec.preset}"] if record.spec.preset else []),
        *([f"tasks       {record.spec.tasks}"] if record.spec.tasks else []),
        f"evaluations {result.n_evaluations}",
        f"elapsed     {record.elapsed_s:.2f} s",
        f"output      {tuple(result.output_shape)}",
        f"efficiency  gap {result.efficiency_gap():.3g}",
    ]
    _out("\n".join(lines))
    _out("top units by |total contribution|:")
    _out(_table(_top_units(result, 10), ["unit", "total", "stderr (norm)"]))
    return 0


def _cmd_runs_export(args: argparse.Namespace) -> int:
    store = _store()
    record = _record_or_fail(store, args.id)
    try:
        path = store.export(record.id, args.file)
    except ValueError as error:
        raise UsageError(str(error)) from None
    _err(f"wrote {path}")
    return 0


def _cmd_runs_import(args: argparse.Namespace) -> int:
    store = _store()
    try:
        record = store.import_(args.file)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    _out(record.id)
    return 0


def _cmd_runs_delete(args: argparse.Namespace) -> int:
    store = _store()
    record = _record_or_fail(store, args.id)
    store.delete(record.id)
    _err(f"deleted {record.short_id}")
    return 0


# ---------------------------------------------------------------------------------------- report
def _build_report(sub: Any) -> None:
    parser = sub.add_parser("report", help=SUBCOMMAND_HELP["report"], add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the arguments of msa report (see msa report --help)")
    parser.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        from .report import report_main
    except ImportError as error:
        raise UsageError(f"msa report is not available: {error}") from None
    return int(report_main(list(args.rest)) or 0)


register_subcommand("models", _build_models, "list the built-in models")
register_subcommand("layers", _build_layers, "list a model's lesionable layers")
register_subcommand("run", _build_run, "compute (or fetch from the store) the Shapley modes of a model's units")
register_subcommand("runs", _build_runs, "the run store: list, show, export, import, delete")
register_subcommand("report", _build_report, "run the analyses and write docs/FINDINGS.md (see msa_core.report)")


# ---------------------------------------------------------------------------------------- main
def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The ``msa`` parser. Subcommands registered with a help line are built only when ``command`` names
    them (``"*"``: all); the others appear with their help line, so ``msa --help`` stays fast."""
    parser = _Parser(prog="msa", description="Multiperturbation Shapley-value Analysis of neural-network units.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", parser_class=_Parser,
                                help="the command (msa COMMAND --help for its options)")
    sub.required = True
    for name, builder in SUBCOMMANDS.items():
        if command in ("*", name) or name not in SUBCOMMAND_HELP:
            builder(sub)
        else:
            sub.add_parser(name, help=SUBCOMMAND_HELP[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msa``; returns the exit status (0 ok, 1 run failure, 2 bad arguments or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:  # its own parser owns every argument after the word, --help included
            return _cmd_report(argparse.Namespace(rest=argv[1:]))
        command = next((a for a in argv if not a.startswith("-")), None)
        parser = build_parser(command if command in SUBCOMMANDS else None)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as error:
        _err(f"msa: error: {error}")
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0) if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        _err("msa: interrupted (a checkpoint was saved; run the same command again to resume)")
        return 130
    except (ValueError, KeyError, FileNotFoundError, TypeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        _err(f"msa: error: {' '.join(str(message).split())}")
        return 2
    except Exception as error:
        from .estimators import RunCancelled

        if isinstance(error, RunCancelled):
            _err("msa: the run was cancelled")
            return 1
        _err(f"msa: {type(error).__name__}: {' '.join(str(error).split())}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
