"""Built-in models ("zoo") mirroring the MSA papers, with weights committed under ``assets/``.

Registry API::

    from msa_core.zoo import BUILTINS, load_builtin, default_units, all_block_paths
    model, data = load_builtin("mlp-digits")      # model in eval mode, data: dict of np arrays

Names: ``mlp-digits``, ``mlp-digits-l1``, ``mlp-digits-l2`` (classifiers),
``dcgan-digits`` (generator), ``moe-lm`` (language-model).

Assets are looked up in ``$MSA_ASSETS`` if set, else ``<repo>/assets``.
Each model is ``<assets>/<name>.safetensors`` (config as JSON in the
safetensors metadata under key ``"config"``, class name under
``"architecture"``), eval data is an ``.npz`` loaded with ``allow_pickle=False``.
Train them again with ``python -m msa_core.zoo.train all``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .architectures import ARCHITECTURES, DCGANGenerator, DigitsMLP, MoELM

__all__ = [
    "BuiltinSpec", "BUILTINS", "assets_dir", "load_builtin", "default_units", "all_block_paths",
    "DigitsMLP", "DCGANGenerator", "MoELM",
]

DCGAN_BLOCK_PATHS = ("net.0", "net.1", "net.2")


@dataclass(frozen=True)
class BuiltinSpec:
    """One built-in model.

    ``weights`` and ``eval_data`` are file names inside the assets folder;
    ``units`` is the default lesion layer path (str) or paths (tuple).
    """

    name: str
    description: str
    task: str  # "classifier" | "generator" | "language-model"
    weights: str
    eval_data: str
    units: str | tuple[str, ...]


BUILTINS: dict[str, BuiltinSpec] = {
    spec.name: spec
    for spec in (
        BuiltinSpec("mlp-digits", "MLP 64-100-10 (LeakyReLU) on sklearn 8x8 digits, no regularisation",
                    "classifier", "mlp-digits.safetensors", "digits_eval.npz", "1"),
        BuiltinSpec("mlp-digits-l1", "MLP 64-100-10 (LeakyReLU) on sklearn 8x8 digits, L1 weight penalty",
                    "classifier", "mlp-digits-l1.safetensors", "digits_eval.npz", "1"),
        BuiltinSpec("mlp-digits-l2", "MLP 64-100-10 (LeakyReLU) on sklearn 8x8 digits, L2 weight penalty",
                    "classifier", "mlp-digits-l2.safetensors", "digits_eval.npz", "1"),
        BuiltinSpec("dcgan-digits", "DCGAN generator, 16-d latent -> 1x32x32 digit images in [-1, 1]",
                    "generator", "dcgan-digits.safetensors", "dcgan_digits_eval.npz", "net.1"),
        BuiltinSpec("moe-lm", "Character-level MoE LM (2 blocks, 4 experts, top-2) on words of 5 languages",
                    "language-model", "moe-lm.safetensors", "moe_lm_eval.npz",
                    ("blocks.0.moe.router", "blocks.1.moe.router")),
    )
}


def assets_dir() -> Path:
    """Folder holding the weights and eval data: ``$MSA_ASSETS`` or ``<repo>/assets`` (read at call time)."""
    env = os.environ.get("MSA_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "assets"


def _spec(name: str) -> BuiltinSpec:
    try:
        return BUILTINS[name]
    except KeyError:
        raise KeyError(f"unknown builtin model {name!r}; valid names: {', '.join(sorted(BUILTINS))}") from None


def load_builtin(name: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, np.ndarray]]:
    """Load a built-in model (eval mode, on ``device``) and its evaluation arrays.

    Returns ``(model, data)``; ``data`` keys per model:

    * MLPs: ``x`` float32 (500, 64) in [0, 1], ``y`` int64 (500,), ``images`` float32 (500, 8, 8).
    * ``dcgan-digits``: ``z`` float32 (32, nz) fixed latent vectors.
    * ``moe-lm``: ``tokens`` int64 (n_words, T), ``lengths`` int64 (n_words,),
      ``language`` int64 (n_words,) index into ``languages`` (str array),
      ``vocab`` str array (V,), ``words`` str array (n_words,).

    Raises KeyError (listing valid names) for an unknown name and
    FileNotFoundError if the asset files are missing.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    spec = _spec(name)
    root = assets_dir()
    wpath = root / spec.weights
    with safe_open(str(wpath), framework="pt") as f:
        meta = f.metadata() or {}
    arch = ARCHITECTURES[meta["architecture"]]
    model = arch(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(wpath)))
    model.to(device).eval()
    with np.load(root / spec.eval_data, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    return model, data


def default_units(name: str) -> str | list[str]:
    """Default lesion layer: ``"1"`` for the MLPs, ``"net.1"`` for the DCGAN (a single path, str),
    and the list of router paths for ``moe-lm`` (list[str])."""
    units = _spec(name).units
    return list(units) if isinstance(units, tuple) else units


def all_block_paths(name: str = "dcgan-digits") -> list[str]:
    """Every lesionable block of a model as a list of paths.

    For ``dcgan-digits`` (default): ``["net.0", "net.1", "net.2"]`` (hidden
    blocks; the output block ``net.3`` is excluded). For the MLPs ``["1"]``,
    for ``moe-lm`` the router paths.
    """
    spec = _spec(name)
    if spec.name == "dcgan-digits":
        return list(DCGAN_BLOCK_PATHS)
    return list(spec.units) if isinstance(spec.units, tuple) else [spec.units]
