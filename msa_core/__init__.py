"""msa_core: Multiperturbation Shapley-value Analysis (MSA) of neural-network units.

The public API: build a game (``lesion_game`` over a model's units, or any callable on coalition
matrices), estimate its Shapley modes with ``shapley_modes``, and keep the ``ShapleyResult``.
"""

from .estimators import MAX_EXACT_PLAYERS, METHODS, RunCancelled, SamplingState, shapley_modes
from .games import LesionGame, lesion_game
from .lesion import LayerInfo, UnitSpec, lesion_hooks, list_layers
from .models import ModelLoadError, Subject, list_builtins, load_subject
from .objectives import (
    Objective,
    class_probability,
    per_class_accuracy,
    token_log_prob,
)
from .result import ShapleyResult
from .types import ChainGame, CoalitionMatrix, Game, GameValues, Permutations

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
