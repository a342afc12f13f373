"""``msa models`` (the built-in models) and ``msa layers MODEL`` (a model's lesionable layers)."""

from __future__ import annotations

import argparse
from typing import Any

from .base import SUBCOMMAND_HELP, _add_model_arguments, _check_inputs, _load_subject, _out, _table


def _build_models(sub: Any) -> None:
    parser = sub.add_parser("models", help=SUBCOMMAND_HELP["models"])
    parser.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from ..runs import list_builtins

    builtins = list_builtins()
    width = max((len(name) for name, _ in builtins), default=0)
    for name, description in builtins:
        _out(f"{name.ljust(width)}  {description}")
    return 0


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
