"""msa_core: Multiperturbation Shapley-value Analysis (MSA) of neural-network units.

The public API: build a game (``lesion_game`` over a model's units, or any callable on coalition
matrices), estimate its Shapley modes with ``shapley_modes``, and keep the ``ShapleyResult``.
"""

# Names are imported on first use (PEP 562), so ``import msa_core.cli`` (``msa --help``) does not import
# torch. Each public name maps to the submodule that defines it.
_LAZY = {
    **dict.fromkeys(("MAX_EXACT_PLAYERS", "METHODS", "RunCancelled", "SamplingState", "shapley_modes"), "estimators"),
    **dict.fromkeys(("LesionGame", "lesion_game"), "games"),
    **dict.fromkeys(("LayerInfo", "UnitSpec", "lesion_hooks", "list_layers"), "lesion"),
    **dict.fromkeys(("ModelLoadError", "Subject", "list_builtins", "load_subject"), "models"),
    **dict.fromkeys(("Objective", "class_probability", "per_class_accuracy", "token_log_prob"), "objectives"),
    "ShapleyResult": "result",
    **dict.fromkeys(("ChainGame", "CoalitionMatrix", "Game", "GameValues", "Permutations"), "types"),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'msa_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "shapley_modes",
    "lesion_game",
    "load_subject",
    "list_builtins",
    "Subject",
    "ModelLoadError",
    "list_layers",
    "lesion_hooks",
    "LesionGame",
    "UnitSpec",
    "LayerInfo",
    "ShapleyResult",
    "SamplingState",
    "RunCancelled",
    "Objective",
    "per_class_accuracy",
    "class_probability",
    "token_log_prob",
    "CoalitionMatrix",
    "GameValues",
    "Permutations",
    "Game",
    "ChainGame",
    "METHODS",
    "MAX_EXACT_PLAYERS",
    "__version__",
]
