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

Modules: :mod:`.base` (registry, usage error, shared arguments), :mod:`.model_commands` (``models``,
``layers``), :mod:`.run_command` (``run``), :mod:`.store_commands` (``runs ...``); ``report`` and
:func:`main` live here. Each imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .base import (  # noqa: F401 - SUBCOMMAND_HELP and SubcommandBuilder stay importable from msa_core.cli
    SUBCOMMAND_HELP,
    SUBCOMMANDS,
    SubcommandBuilder,
    UsageError,
    _err,
    _Parser,
    register_subcommand,
)
from .model_commands import _build_layers, _build_models
from .run_command import _build_run
from .store_commands import _build_runs

__all__ = ["main", "SUBCOMMANDS", "register_subcommand", "UsageError"]


# ---------------------------------------------------------------------------------------- report
def _build_report(sub: Any) -> None:
    parser = sub.add_parser("report", help=SUBCOMMAND_HELP["report"], add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the arguments of msa report (see msa report --help)")
    parser.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        from ..report import report_main
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
        from ..estimators import RunCancelled

        if isinstance(error, RunCancelled):
            _err("msa: the run was cancelled")
            return 1
        _err(f"msa: {type(error).__name__}: {' '.join(str(error).split())}")
        return 1

