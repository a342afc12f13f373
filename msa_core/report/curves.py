"""Section 2: lesion curves (Ghorbani & Zou 2020), Neuron Shapley's estimators and pairwise interactions.

All on the Fashion-MNIST MLPs of section 1: the games are those of the section's stored runs (per-class
accuracy; a curve's value is its mean, the balanced accuracy), the Shapley ranking is the run's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..analysis import (
    activation_ranking,
    leave_one_out_ranking,
    lesion_curves,
    pairwise_interactions,
    random_lesion_curve,
    shapley_ranking,
    units_to_reach,
    weight_norm_ranking,
)
from ..runs import RunSpec
from .markdown import md_table, run_tag
from .mlp import MLP_MODELS
from .runs import Budget, FindingsRuns

__all__ = ["CHANCE", "lesion_curve_findings", "neuron_shapley_findings", "interaction_findings",
           "curves_markdown", "estimators_markdown", "interactions_markdown"]

CHANCE = 0.1  # balanced accuracy of a 10-class classifier that always answers the same class
CHANCE_MARGIN = 0.05  # "reaches chance" = balanced accuracy at or below chance + this margin
REFERENCE = "mlp-fashion"
TOPK_K = 5  # the bandit looks for the 5 most valuable units


def _units_to_half(curve, label: str, n_players: int) -> str:
    """Units removed until balanced accuracy is halfway between intact and chance (random: median)."""
    if label == "random":
        curves = curve.extra["curves"]
        hits = [units_to_reach(c, (c[0] + CHANCE) / 2) for c in curves]
        return f"{np.median([n_players if h is None else h for h in hits]):.0f}"
    reach = units_to_reach(curve, (curve.values[0] + CHANCE) / 2)
    return "never" if reach is None else str(reach)


def lesion_curve_findings(runs: FindingsRuns, records: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Lesion curves on every MLP for six rankings, with the units needed to reach chance."""
    out: dict[str, Any] = {"curves": {}, "level": CHANCE + CHANCE_MARGIN}
    rows = []
    for name in MLP_MODELS:
        record = records[name]
        runs.note("lesion_curves", record, name)
        game = runs.game(record)
        orders = {
            "Shapley (descending)": shapley_ranking(record.result),
            "Shapley (ascending)": shapley_ranking(record.result, descending=False),
            "activation (mean abs)": activation_ranking(game),
            "weight norm (in x out)": weight_norm_ranking(game, direction="both"),
            "leave-one-out": leave_one_out_ranking(game),
        }
        curves = lesion_curves(game, orders)
        curves["random"] = random_lesion_curve(game, n_orders=budget.random_orders, seed=budget.seed)
        out["curves"][name] = curves
        rand_each = [units_to_reach(c, out["level"]) for c in curves["random"].extra["curves"]]
        rand_each = [game.n_players if r is None else r for r in rand_each]
        for label, curve in curves.items():
            reach = curve.units_to_reach(out["level"])
            rows.append({
                "model": name, "run": run_tag(record), "ranking": label, "AUC": curve.auc,
                "after 10 removed": float(curve.values[min(10, len(curve.values) - 1)]),
                "units to half": _units_to_half(curve, label, game.n_players),
                "units to chance": (
                    f"{np.median(rand_each):.0f} (5-95%: {np.percentile(rand_each, 5):.0f}-{np.percentile(rand_each, 95):.0f})"
                    if label == "random" else ("never" if reach is None else str(reach))
                ),
            })
    out["table"] = pd.DataFrame(rows)
    return out


def neuron_shapley_findings(runs: FindingsRuns, records: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Plain, truncated and top-k sampling on mlp-fashion (stored runs), against section 1's run."""
    reference = records[REFERENCE]
    runs.note("estimators", reference, f"{REFERENCE} reference")
    ref_total = reference.result.total_contribution().numpy()
    ref_top = sorted(np.argsort(-ref_total)[:TOPK_K].tolist())
    made, tags = {}, {}
    for method, options in (("permutation", {}), ("truncated", {}), ("topk", {"k": TOPK_K})):
        spec = RunSpec(REFERENCE, method=method, n_permutations=budget.neuron_shapley_permutations, seed=budget.seed + 1,
                       options=options)
        record = runs.run("estimators", f"{REFERENCE} {method}", spec)
        made[method], tags[method] = record.result, run_tag(record)
    corr = lambda r: float(np.corrcoef(r.total_contribution().numpy(), ref_total)[0, 1])  # noqa: E731
    labels = {"permutation": "permutation", "truncated": "truncated (tol 5%)", "topk": f"top-{TOPK_K} bandit"}
    table = pd.DataFrame([
        {"method": labels[m], "run": tags[m], "evaluations": r.n_evaluations, "corr. with reference": corr(r),
         "efficiency gap": r.efficiency_gap() if m != "topk" else float("nan")}
        for m, r in made.items()
    ]).set_index("method")
    info = made["topk"].metadata.get("topk", {})
    skipped = made["truncated"].metadata.get("truncation", {}).get("skipped_fraction", float("nan"))
    return {"reference": reference, "reference_top": ref_top, "table": table, "topk": info,
            "topk_agrees": sorted(info.get("top_k", [])) == ref_top, "skipped": skipped, "topk_run": tags["topk"]}


def interaction_findings(runs: FindingsRuns, records: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Pairwise interactions of the top Shapley units of mlp-fashion (per-class game, mean over classes)."""
    record = records[REFERENCE]
    runs.note("interactions", record, REFERENCE)
    top = shapley_ranking(record.result)[: budget.interaction_units]
    inter = pairwise_interactions(runs.game(record), top, n_permutations=budget.interaction_permutations, seed=budget.seed)
    frame = inter.to_frame().sort_values("gamma", key=np.abs, ascending=False).reset_index(drop=True)
    frame["|gamma| / stderr"] = frame["gamma"].abs() / frame["stderr"].replace(0, np.nan)
    return {"record": record, "result": inter, "table": frame}


def curves_markdown(curves: dict[str, Any], budget: Budget, figure: str) -> list[str]:
    """The Markdown of section 2 (lines)."""
    table = curves["table"]
    lines = [
        "## 2. Lesion curves: Shapley-ranked removal against other rankings (Ghorbani & Zou 2020)",
        "",
        "Game: balanced accuracy (mean of the per-class accuracies of section 1's game; chance = 0.1) of the "
        "section 1 runs' games. Units are removed cumulatively in the order of each ranking: Shapley value (sum "
        "of the run's mode over classes), mean |activation| over the inputs, the product of incoming and outgoing "
        f"weight norms, single-unit leave-one-out drop, and {budget.random_orders} random orders (mean with a 5-95% "
        f"band). 'Units to chance' is the fewest removed units that bring balanced accuracy to {curves['level']:.2f} "
        "(chance + 0.05) or below, 'units to half' those that bring it halfway from intact to chance (random: the "
        "median over orders); AUC is the mean accuracy over the whole removal (lower = the ranking finds the "
        "responsible units sooner).",
        "",
        md_table(table),
        "",
    ]
    for name in MLP_MODELS:
        sub = table[table["model"] == name].set_index("ranking")
        shap_auc = sub.loc["Shapley (descending)", "AUC"]
        others = sub.drop(index=["Shapley (descending)", "Shapley (ascending)"])
        best = others["AUC"].idxmin()
        beats = bool((others["AUC"] > shap_auc).all())
        lines.append(
            f"- **{name}** (run {sub['run'].iloc[0]}): Shapley-ranked removal reaches chance after "
            f"{sub.loc['Shapley (descending)', 'units to chance']} units; random orders need {sub.loc['random', 'units to chance']}, "
            f"activation {sub.loc['activation (mean abs)', 'units to chance']}, weight norm "
            f"{sub.loc['weight norm (in x out)', 'units to chance']}, leave-one-out {sub.loc['leave-one-out', 'units to chance']}. "
            f"AUC {shap_auc:.3f} for Shapley against {best} {others.loc[best, 'AUC']:.3f} (the best other ranking): "
            + ("Shapley destroys accuracy fastest, as Neuron Shapley claims." if beats else f"Shapley is **not** the fastest here; {best} is.")
        )
    return lines + ["", f"![lesion curves]({figure})", ""]


def estimators_markdown(neuron: dict[str, Any], budget: Budget) -> list[str]:
    """The Markdown of the estimator comparison (lines)."""
    info = neuron["topk"]
    return [
        f"### Neuron Shapley's estimators on {REFERENCE}",
        "",
        f"Against section 1's {budget.mlp_permutations}-permutation run {run_tag(neuron['reference'])} (reference), "
        f"with {budget.neuron_shapley_permutations} permutations' budget each (seed {budget.seed + 1}; default "
        f"options, top-k with k = {TOPK_K}): truncated sampling skipped {100 * neuron['skipped']:.0f}% of the chain "
        f"evaluations; the top-{TOPK_K} "
        f"bandit (run {neuron['topk_run']}, {'resolved' if info.get('resolved') else 'not resolved within the budget'}, {info.get('rounds', '?')} "
        f"rounds) names units {info.get('top_k')}, the reference's top {TOPK_K} are {neuron['reference_top']} "
        f"({'the same' if neuron['topk_agrees'] else 'not the same'}).",
        "",
        md_table(neuron["table"]),
        "",
    ]


def interactions_markdown(inter: dict[str, Any], budget: Budget) -> list[str]:
    """The Markdown of the interaction analysis (lines)."""
    frame = inter["table"]
    n_red = int((frame["gamma"] < 0).sum())
    return [
        f"### Pairwise interactions of the top units ({REFERENCE}, balanced accuracy)",
        "",
        "`gamma_ij = phi_{ij merged} - phi_i(N - j) - phi_j(N - i)` (Keinan et al. 2004, as msapy computes it), for "
        f"the {budget.interaction_units} units with the largest Shapley values in run {run_tag(inter['record'])}, on "
        f"that run's game, all pairs from {budget.interaction_permutations} shared permutations "
        f"({inter['result'].n_evaluations:,} evaluations; computed by `msa_core.analysis.pairwise_interactions`, "
        "not stored as a run). Positive = synergy, negative = redundancy. Strongest pairs:",
        "",
        md_table(frame.head(8)),
        "",
        (f"{n_red} of {len(frame)} pairs are redundant (gamma < 0): the strongest units partly do the same job, so "
         "lesioning one of them is cushioned by the others.") if n_red * 2 >= len(frame)
        else f"{len(frame) - n_red} of {len(frame)} pairs are synergistic (gamma > 0).",
        "",
    ]
