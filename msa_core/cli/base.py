"""What every ``msa`` subcommand shares: the subcommand registry, the one-line usage error, output
helpers, and the model/inputs arguments with their checks.

Only the standard library is imported at module level: ``msa --help`` loads this module, and torch,
the estimators and the run store are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["UsageError", "SUBCOMMANDS", "SUBCOMMAND_HELP", "SubcommandBuilder", "register_subcommand"]


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
    from ..runs import RunStore

    return RunStore()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _top_units(result: Any, count: int) -> list[list[str]]:
    """Rows ``[unit, total, stderr]`` of the ``count`` units with the largest |total contribution|."""
    import numpy as np
    import torch

    from ..ondisk import is_on_disk

    total = result.total_contribution()
    order = total.abs().argsort(descending=True)[:count].tolist()
    stderr = None
    if result.stderr is not None:  # only the shown units' rows: an on-disk stderr is never read whole
        rows = result.stderr.read_rows(order) if is_on_disk(result.stderr) else result.stderr[order]
        stderr = torch.as_tensor(np.asarray(rows)).reshape(len(order), -1).norm(dim=1)
    return [[result.unit_labels[i], f"{float(total[i]):+.4f}", "-" if stderr is None else f"{float(stderr[k]):.4f}"]
            for k, i in enumerate(order)]


# ------------------------------------------------------------------------------ model and inputs
def _add_model_arguments(parser: Any) -> None:
    """MODEL and --inputs, shared by the commands that load a model."""
    parser.add_argument("model", help="built-in name, model file, recipe (module:function or file.py:function)")
    parser.add_argument("--inputs", default=None, metavar="FILE",
                        help="example inputs: .npz (x, optional labels) or .pt tensor file; needed by TorchScript .pt models")


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
    from ..runs import load_subject

    try:
        return load_subject(model, inputs=inputs)
    except ValueError as error:
        raise _with_inputs_hint(error) from None
