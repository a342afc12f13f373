"""The public API: __all__ is deliberate, and importing msa_core stays light."""

from __future__ import annotations

import subprocess
import sys

import msa_core

PUBLIC = {
    "shapley_modes", "lesion_game", "list_layers", "lesion_hooks", "LesionGame", "UnitSpec", "LayerInfo",
    "ShapleyResult", "SamplingState", "RunCancelled", "Objective", "per_class_accuracy", "class_probability",
    "token_log_prob", "CoalitionMatrix", "GameValues", "Permutations", "Game", "ChainGame", "METHODS",
    "MAX_EXACT_PLAYERS", "__version__", "load_subject", "list_builtins", "Subject", "ModelLoadError",
}


def test_all_is_exactly_the_public_api():
    assert set(msa_core.__all__) == PUBLIC
    assert len(msa_core.__all__) == len(set(msa_core.__all__))
    for name in msa_core.__all__:
        assert hasattr(msa_core, name), name


def test_importing_msa_core_loads_neither_streamlit_nor_torchvision_nor_ray():
    code = (
        "import sys, msa_core; "
        "print(','.join(m for m in ('streamlit', 'torchvision', 'ray', 'transformers') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_public_functions_have_docstrings():
    aliases = {"CoalitionMatrix", "GameValues", "Permutations"}  # torch.Tensor aliases, documented in types.py
    for name in set(msa_core.__all__) - aliases:
        obj = getattr(msa_core, name)
        if callable(obj) and not name.startswith("_"):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
