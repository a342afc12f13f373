"""Analyses over Shapley results and games: pure functions, no UI.

* :mod:`.lesion_curves`: remove units in ranked order (Shapley, random, activation, weight norm,
  leave-one-out), area under the curve, units needed to reach chance.
* :mod:`.concentration`: index of distributed computation, hub share, per run and per output.
* :mod:`.modes`: correlation and clustering of modes, cluster lesions, per-layer summaries,
  spatial-frequency profiles of image modes.
* :mod:`.specialisation`: unit specificity per output, top specialists and their lesion effect.
* :mod:`.interactions`: pairwise interactions ``gamma_ij`` from shared permutations.
"""

from .concentration import concentration_table, distributed_index, hub_share, mean_contributions
from .interactions import InteractionResult, pairwise_interactions
from .lesion_curves import (
    LesionCurve,
    activation_ranking,
    area_under_curve,
    leave_one_out_ranking,
    lesion_curve,
    lesion_curves,
    prefix_coalitions,
    random_lesion_curve,
    random_orders,
    shapley_ranking,
    unit_activations,
    units_to_reach,
    weight_norm_ranking,
)
from .modes import (
    cluster_modes,
    layer_groups,
    layer_modes,
    layer_of,
    layer_summary,
    lesion_cluster,
    mode_correlation,
    radial_power_spectrum,
    spatial_frequency_profile,
    spectral_centroid,
)
from .specialisation import specialist_lesion_effect, specialist_table, specificity, top_specialists

__all__ = [
    "LesionCurve",
    "lesion_curve",
    "lesion_curves",
    "prefix_coalitions",
    "random_orders",
    "random_lesion_curve",
    "shapley_ranking",
    "activation_ranking",
    "unit_activations",
    "weight_norm_ranking",
    "leave_one_out_ranking",
    "area_under_curve",
    "units_to_reach",
    "mean_contributions",
    "distributed_index",
    "hub_share",
    "concentration_table",
    "mode_correlation",
    "cluster_modes",
    "lesion_cluster",
    "layer_of",
    "layer_groups",
    "layer_modes",
    "layer_summary",
    "radial_power_spectrum",
    "spatial_frequency_profile",
    "spectral_centroid",
    "specificity",
    "top_specialists",
    "specialist_lesion_effect",
    "specialist_table",
    "InteractionResult",
    "pairwise_interactions",
]
