"""``msa runs list | show ID | export ID FILE | import FILE | delete ID``: the run store, shared with the app."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .base import SUBCOMMAND_HELP, UsageError, _err, _out, _store, _table, _top_units


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
    from ..runs import RunNotFound

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
