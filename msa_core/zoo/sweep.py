"""Recipes for the Fashion-MNIST width sweep: ``"msa_core.zoo.sweep:mlp_fashion_l1_n25"`` and so on.

Each recipe name is ``mlp_fashion[_l1|_l2]_n<N>`` and loads ``<assets>/sweep/mlp-fashion[-l1|-l2]-n<N>.safetensors``
(written by ``python -m training sweep``; not in git) with the built-ins' held-out images and game
(per-class accuracy on the 1,024 held-out images, hidden layer ``"1"``). ``N = 200`` is the built-in
itself, so ``sweep_ref("l1", 200)`` is ``"mlp-fashion-l1"``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

from . import FASHION_CLASSES, load_eval_data, load_weights, sweep_dir

__all__ = ["sweep_ref", "sweep_recipe", "PENALTY_NAMES"]

PENALTY_NAMES = {"none": "mlp-fashion", "l1": "mlp-fashion-l1", "l2": "mlp-fashion-l2"}
_RECIPE = re.compile(r"^mlp_fashion(?:_(l1|l2))?_n(\d+)$")


def sweep_ref(penalty: str, n_hidden: int) -> str:
    """The model reference of one sweep point: a built-in name at N = 200, else a recipe reference."""
    if penalty not in PENALTY_NAMES:
        raise ValueError(f"penalty must be one of {', '.join(PENALTY_NAMES)}; got {penalty!r}")
    if int(n_hidden) == 200:
        return PENALTY_NAMES[penalty]
    return f"msa_core.zoo.sweep:{PENALTY_NAMES[penalty].replace('-', '_')}_n{int(n_hidden)}"


def sweep_recipe(penalty: str, n_hidden: int) -> Callable[..., dict[str, Any]]:
    """A recipe function (``device=`` -> dict, see :mod:`msa_core.models.recipe`) for one sweep model."""
    file_name = f"{PENALTY_NAMES[penalty]}-n{int(n_hidden)}.safetensors"

    def recipe(device: str = "cpu") -> dict[str, Any]:
        path = sweep_dir() / file_name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: train the sweep with `python -m training sweep`")
        data = load_eval_data("fashion_eval.npz")
        return {
            "model": load_weights(path, device),
            "inputs": torch.from_numpy(data["x"]),
            "labels": torch.from_numpy(data["y"]),
            "class_names": list(FASHION_CLASSES),
            "default_units": ["1"],
            "unit_presets": {"hidden layer": ["1"]},
            "name": file_name.removesuffix(".safetensors"),
            "description": f"MLP 784-{int(n_hidden)}-10 on Fashion-MNIST, penalty {penalty} (width sweep)",
        }

    return recipe


def __getattr__(name: str) -> Callable[..., dict[str, Any]]:
    # PEP 562: "msa_core.zoo.sweep:mlp_fashion_l1_n25" resolves here without one function per width.
    match = _RECIPE.match(name)
    if match is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return sweep_recipe(match.group(1) or "none", int(match.group(2)))
