"""The ``msa`` command: built-in models, layer catalogues, cached runs, and the run store.

::

    msa models                          # built-in models with one-line descriptions
    msa layers MODEL [--inputs FILE]    # lesionable layers: path, unit kind, count, output shape
    msa run MODEL [--inputs FILE] [--layer PATH ...] [--objective NAME] [--lesion zero|mean|skip]
            [--method exact|permutation|antithetic|owen] [--permutations M] [--seed S]
            [--device cpu|cuda] [--backend local|ray] [--address ADDR] [--no-cache] [--out FILE.npz]
    msa runs list | show ID | export ID FILE | delete ID | import FILE

``--inputs FILE``: example inputs (a ``.npz`` with ``x`` or ``inputs``, and optionally ``labels``/``y``
for a per-class accuracy objective, or a ``.pt`` tensor file); a TorchScript ``.pt`` model needs it.
The spec keeps the file's absolute path; the run key depends on its content, not on its path.

Runs live in the store under ``$MSA_HOME`` (or the user cache directory), shared with the app. Bad
arguments print one line ``msa: error: ...`` and exit with status 2; nothing is half-written.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> builder taking the argparse subparsers);
add one with :func:`register_subcommand`.
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


def register_subcommand(name: str, builder: SubcommandBuilder) -> None:
    """Add (or replace) a subcommand: ``builder(subparsers)`` must call ``subparsers.add_parser(name, ...)``
    and ``set_defaults(func=handler)`` where ``handler(args) -> int`` returns the exit status."""
    SUBCOMMANDS[name] = builder


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
    parser = sub.add_parser("models", help="list the built-in models")
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
    parser = sub.add_parser("layers", help="list a model's lesionable layers")
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
def _build_run(sub: Any) -> None:
    from .estimators import METHODS

    parser = sub.add_parser("run", help="compute (or fetch from the store) the Shapley modes of a model's units")
    _add_model_arguments(parser)
    parser.add_argument("--layer", action="append", dest="layers", metavar="PATH",
                        help="layer whose units are the players (repeat for several; default: the model's)")
    parser.add_argument("--objective", help="objective name (default: the model's)")
    parser.add_argument("--lesion", choices=("zero", "mean", "skip"), default="zero")
    parser.add_argument("--method", choices=sorted(METHODS), default="permutation")
    parser.add_argument("--permutations", type=int, default=100, metavar="M", help="sampling budget (default 100)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B", help="coalitions per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    parser.add_argument("--label", default="", help="a human label for the run")
    parser.add_argument("--no-cache", action="store_true", help="recompute and replace the stored run")
    parser.add_argument("--out", default=None, metavar="FILE.npz", help="also write the result to this .npz file")
    parser.set_defaults(func=_cmd_run)


def _check_inputs(path: str | None) -> str | None:
    """``--inputs``: None, or the file's absolute path (so the app and later commands run from another
    folder find it); a missing file is a usage error before anything is loaded."""
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        where = "a folder" if file.is_dir() else "no file"
        raise UsageError(f"--inputs: {where} at {str(file)!r} (give a .npz or .pt tensor file)")
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


def _cmd_run(args: argparse.Namespace) -> int:
    from .runs import RunSpec, execute, resolve
    from .runs.execute import plan

    if args.permutations < 1:
        raise UsageError(f"--permutations must be a positive integer; got {args.permutations}")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer; got {args.batch_size}")
    if args.address and args.backend != "ray":
        raise UsageError("--address is only used with --backend ray")
    out = _check_out(args.out)
    inputs = _check_inputs(args.inputs)
    spec = RunSpec(
        model=_model_ref(args.model),
        inputs=inputs,
        units=tuple(args.layers) if args.layers else None,
        objective=args.objective,
        lesion=args.lesion,
        method=args.method,
        n_permutations=args.permutations,
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
    bar = None
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
                             address=args.address, resolved=resolved)
        finally:
            bar.close()
        p = record.params
        _err(f"computed {p['n_players']} units x {p['n_evaluations']} evaluations in {record.elapsed_s:.1f} s"
             + (f" (resumed at sample {p['resumed_from_unit']})" if p.get("resumed_from_unit") else ""))
    if out is not None:
        record.result.save(out)  # atomic: a temporary file renamed into place
        _err(f"wrote {out}")
    _out(record.id)
    return 0


# ---------------------------------------------------------------------------------------- runs
def _build_runs(sub: Any) -> None:
    parser = sub.add_parser("runs", help="the run store: list, show, export, import, delete")
    runs = parser.add_subparsers(dest="runs_command", metavar="{list,show,export,import,delete}")
    runs.required = True
    runs.add_parser("list", help="list stored runs").set_defaults(func=_cmd_runs_list)
    show = runs.add_parser("show", help="show one run")
    show.add_argument("id", help="run id (or a unique prefix of at least 4 characters)")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.set_defaults(func=_cmd_runs_show)
    export = runs.add_parser("export", help="write a run to FILE (.npz, .csv or .parquet)")
    export.add_argument("id")
    export.add_argument("file")
    export.set_defaults(func=_cmd_runs_export)
    imp = runs.add_parser("import", help="import a run from an .npz file")
    imp.add_argument("file")
    imp.set_defaults(func=_cmd_runs_import)
    delete = runs.add_parser("delete", help="delete a run")
    delete.add_argument("id")
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
        f"method      {record.spec.method}, {result.n_samples} samples, seed {record.spec.seed}",
        f"evaluations {result.n_evaluations}",
        f"elapsed     {record.elapsed_s:.2f} s",
        f"output      {tuple(result.output_shape)}",
        f"efficiency  gap {result.efficiency_gap():.3g}",
    ]
    _out("\n".join(lines))
    total = result.total_contribution()
    order = total.abs().argsort(descending=True)[:10].tolist()
    stderr = result.stderr.reshape(result.n_players, -1).norm(dim=1) if result.stderr is not None else None
    rows = [[result.unit_labels[i], f"{float(total[i]):+.4f}", "" if stderr is None else f"{float(stderr[i]):.4f}"]
            for i in order]
    _out("top units by |total contribution|:")
    _out(_table(rows, ["unit", "total", "stderr (norm)"]))
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
    parser = sub.add_parser("report", help="run the analyses and write docs/FINDINGS.md (see msa_core.report)",
                            add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        from .report import report_main
    except ImportError as error:
        raise UsageError(f"msa report is not available: {error}") from None
    return int(report_main(list(args.rest)) or 0)


register_subcommand("models", _build_models)
register_subcommand("layers", _build_layers)
register_subcommand("run", _build_run)
register_subcommand("runs", _build_runs)
register_subcommand("report", _build_report)


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="msa", description="Multiperturbation Shapley-value Analysis of neural-network units.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", parser_class=_Parser)
    sub.required = True
    for builder in SUBCOMMANDS.values():
        builder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msa``; returns the exit status (0 ok, 1 run failure, 2 bad arguments or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:  # its own parser owns every argument after the word, --help included
            return _cmd_report(argparse.Namespace(rest=argv[1:]))
        parser = build_parser()
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
