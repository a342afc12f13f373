"""Section 1: hub concentration in the Fashion-MNIST MLPs (784-200-10) and its dependence on the width N.

Game (the built-ins' default): per-class accuracy (a 10-vector) on the 1,024 held-out images; players:
the hidden units, lesioned to zero. Standard errors of the index and the hub share come from resampling
the modes: each mode entry is drawn from a normal with the run's estimate and standard error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..analysis import concentration_table, distributed_index, hub_share, mean_contributions
from ..runs import RunSpec
from ..zoo import sweep_dir
from ..zoo.sweep import PENALTY_NAMES, sweep_ref
from .markdown import md_table, run_tag
from .runs import SWEEP_WIDTHS, Budget, FindingsRuns

__all__ = ["MLP_MODELS", "PAPER_INDEX", "PAPER_HUBS", "SWEEP_WIDTHS", "concentration_se",
           "concentration_findings", "sweep_findings", "concentration_markdown", "sweep_markdown"]

MLP_MODELS = ("mlp-fashion-l1", "mlp-fashion-l2", "mlp-fashion")
PENALTY_OF = {"mlp-fashion-l1": "l1", "mlp-fashion-l2": "l2", "mlp-fashion": "none"}
PAPER_INDEX = {"mlp-fashion-l1": 0.60, "mlp-fashion-l2": 0.67, "mlp-fashion": 0.77}
PAPER_HUBS = {"mlp-fashion-l1": 0.12, "mlp-fashion-l2": 0.17, "mlp-fashion": 0.34}


def concentration_se(result: Any, n_draws: int = 400, seed: int = 0) -> dict[str, float]:
    """Index and hub share of ``result`` with standard errors from resampling its modes.

    Each of the ``(n_players, n_outputs)`` mode entries is drawn ``n_draws`` times from
    ``Normal(value, stderr)`` (independently: the estimator's per-entry errors; their correlation over
    outputs is not stored), and the index and hub share of each draw's mean contributions are computed.

    Args:
        result: anything with ``values`` and ``stderr`` (None for exact) of shape ``(n_players, *output_shape)``.

    Returns:
        ``{"index", "index_se", "hub_share", "hub_share_se"}`` (point estimates from the run itself).
    """
    values = np.asarray(result.values, dtype=np.float64).reshape(result.values.shape[0], -1)
    stderr = (np.zeros_like(values) if result.stderr is None  # exact values: no sampling error
              else np.nan_to_num(np.asarray(result.stderr, dtype=np.float64).reshape(values.shape)))
    rng = np.random.default_rng(seed)
    draws = values[None] + stderr[None] * rng.standard_normal((n_draws, *values.shape))
    contributions = draws.mean(-1)  # (n_draws, n_players)
    indices = [distributed_index(c) for c in contributions]
    hubs = [hub_share(c) for c in contributions]
    c = mean_contributions(values)
    return {"index": distributed_index(c), "index_se": float(np.std(indices, ddof=1)),
            "hub_share": hub_share(c), "hub_share_se": float(np.std(hubs, ddof=1))}


def concentration_findings(runs: FindingsRuns, budget: Budget) -> dict[str, Any]:
    """The 1,000-permutation runs of the three N = 200 MLPs, their concentration and standard errors."""
    out: dict[str, Any] = {"records": {}, "tables": {}, "se": {}}
    for name in MLP_MODELS:
        record = runs.run("concentration", name, RunSpec(name, n_permutations=budget.mlp_permutations, seed=budget.seed))
        labels = record.result.metadata.get("output_labels")
        out["records"][name] = record
        out["tables"][name] = concentration_table(record.result, output_labels=labels)
        out["se"][name] = concentration_se(record.result, budget.se_draws, budget.seed)
    se = out["se"]
    out["summary"] = pd.DataFrame(
        {
            "run": [run_tag(out["records"][n]) for n in MLP_MODELS],
            "balanced accuracy": [float(out["records"][n].result.intact.mean()) for n in MLP_MODELS],
            "index (ours)": [se[n]["index"] for n in MLP_MODELS],
            "index SE": [se[n]["index_se"] for n in MLP_MODELS],
            "index (paper)": [PAPER_INDEX[n] for n in MLP_MODELS],
            "hub share (ours)": [se[n]["hub_share"] for n in MLP_MODELS],
            "hub share SE": [se[n]["hub_share_se"] for n in MLP_MODELS],
            "hub share (paper)": [PAPER_HUBS[n] for n in MLP_MODELS],
            "max stderr of a mode entry": [float(out["records"][n].result.stderr.max()) for n in MLP_MODELS],
        },
        index=pd.Index(list(MLP_MODELS), name="model"),
    )
    return out


def sweep_findings(runs: FindingsRuns, budget: Budget) -> dict[str, Any]:
    """Index and hub share (with SEs) against N (``budget.sweep_widths``) for the three penalties; sweep
    weights that are not trained here are listed under ``"missing"``."""
    rows, missing = [], []
    for penalty in ("l1", "l2", "none"):
        for n_hidden in budget.sweep_widths:
            ref = sweep_ref(penalty, n_hidden)
            if n_hidden != 200 and not (sweep_dir() / f"{PENALTY_NAMES[penalty]}-n{n_hidden}.safetensors").exists():
                missing.append(f"{penalty}, N={n_hidden}")
                continue
            permutations = budget.mlp_permutations if n_hidden == 200 else budget.sweep_permutations
            record = runs.run("sweep", f"{penalty}, N={n_hidden}", RunSpec(ref, n_permutations=permutations, seed=budget.seed))
            se = concentration_se(record.result, budget.se_draws, budget.seed)
            rows.append({"penalty": penalty, "N": n_hidden, "run": run_tag(record),
                         "balanced accuracy": float(record.result.intact.mean()), **se})
    table = pd.DataFrame(rows)
    return {"table": table, "missing": missing}


def _separation(se: dict[str, dict[str, float]], a: str, b: str, key: str) -> str:
    diff = se[b][key] - se[a][key]
    spread = float(np.hypot(se[a][key + "_se"], se[b][key + "_se"]))
    z = diff / spread if spread > 0 else float("inf")
    verdict = "resolved" if abs(z) >= 3 else ("marginal" if abs(z) >= 2 else "**not resolved**")
    return f"{b} - {a} = {diff:+.3f} ± {spread:.3f} ({abs(z):.1f} SE, {verdict})"


def concentration_markdown(conc: dict[str, Any], budget: Budget, figure: str, scores: dict) -> list[str]:
    """The Markdown of section 1 (lines)."""
    s, se = conc["summary"], conc["se"]
    index = {n: se[n]["index"] for n in MLP_MODELS}
    hubs = {n: se[n]["hub_share"] for n in MLP_MODELS}
    order = " < ".join(f"{n} ({index[n]:.3f} ± {se[n]['index_se']:.3f})" for n in sorted(MLP_MODELS, key=index.get))
    hub_order = " < ".join(f"{n} ({100 * hubs[n]:.1f}% ± {100 * se[n]['hub_share_se']:.1f})" for n in sorted(MLP_MODELS, key=hubs.get))
    near_zero = ", ".join(f"{n}: {100 * scores[n]['frac_weights_below_1e-2']:.0f}%" for n in MLP_MODELS if n in scores)
    per_class = pd.DataFrame({n: conc["tables"][n]["distributed_index"].iloc[1:] for n in MLP_MODELS})
    per_class.index.name = "class"
    l1_lowest = int((per_class["mlp-fashion-l1"] < per_class[["mlp-fashion-l2", "mlp-fashion"]].min(axis=1)).sum())
    paper_order_classes = int(((per_class["mlp-fashion-l1"] < per_class["mlp-fashion-l2"])
                               & (per_class["mlp-fashion-l2"] < per_class["mlp-fashion"])).sum())
    lines = [
        f"## {1}. Hub concentration in the Fashion-MNIST MLPs (Dixit et al. 2025)",
        "",
        "Game: per-class accuracy (a 10-vector) of a 784-200-10 LeakyReLU MLP on 1,024 held-out Fashion-MNIST test "
        "images (the paper's shape and evaluation size); players: the 200 hidden units, lesioned to zero; "
        f"{budget.mlp_permutations} permutations per model (as the paper). The *index of distributed computation* is "
        "the normalised Shannon entropy of `p_i = c_i^2 / sum_j c_j^2`, with `c_i` unit i's mode averaged over the "
        "ten classes (1 = all units contribute equally, 0 = one unit does everything); the *hub share* is the "
        "smallest fraction of units whose `|c_i|` carry 80% of `sum |c_i|`. Standard errors (SE): "
        f"{budget.se_draws} redraws of every mode entry from a normal with its estimate and standard error "
        "(sampling error of the permutations only; a different training seed would add more). `run` is the "
        "stored run each row comes from (`msa runs show <id>`, or the app's Modes page).",
        "",
        md_table(s),
        "",
        f"**Index, ours: {order}.** Paper: L1 0.60 < L2 0.67 < none 0.77. "
        f"Separations: {_separation(se, 'mlp-fashion-l1', 'mlp-fashion-l2', 'index')}; "
        f"{_separation(se, 'mlp-fashion-l2', 'mlp-fashion', 'index')}.",
        "",
        f"**Hub share, ours: {hub_order}.** Paper: 12% L1, 17% L2, 34% none. "
        f"Separations: {_separation(se, 'mlp-fashion-l1', 'mlp-fashion-l2', 'hub_share')}; "
        f"{_separation(se, 'mlp-fashion-l2', 'mlp-fashion', 'hub_share')}.",
        "",
    ]
    lines += _agreement(index, hubs, se, near_zero)
    lines += [
        "",
        f"Per class, L1 has the lowest index for {l1_lowest} of 10 classes, and the paper's full order "
        f"L1 < L2 < none holds for {paper_order_classes} of 10:",
        "",
        md_table(per_class),
        "",
        f"![concentration and modes]({figure})",
        "",
    ]
    return lines


def _agreement(index: dict, hubs: dict, se: dict, near_zero: str) -> list[str]:
    """Where our numbers agree with the paper's and where they do not, and why (computed, not typed)."""
    l1, l2, none = (index[n] for n in MLP_MODELS)
    z_l1 = (min(l2, none) - l1) / np.hypot(se["mlp-fashion-l1"]["index_se"], se["mlp-fashion-l2"]["index_se"])
    z_l2 = (none - l2) / np.hypot(se["mlp-fashion-l2"]["index_se"], se["mlp-fashion"]["index_se"])
    agree, differ = [], []
    if z_l1 >= 3:
        agree.append("L1 concentrates computation: its index is lowest, resolved by many standard errors")
    else:
        differ.append("L1's index is not clearly below the others'")
    h_l1 = hubs["mlp-fashion-l1"]
    z_hub = (min(hubs["mlp-fashion-l2"], hubs["mlp-fashion"]) - h_l1) / np.hypot(
        se["mlp-fashion-l1"]["hub_share_se"], se["mlp-fashion-l2"]["hub_share_se"])
    if z_hub >= 3:
        agree.append(f"L1 also has the smallest hub share ({100 * h_l1:.0f}% of the units carry 80% of the contribution)")
    if z_l2 >= 3:
        agree.append("L2 sits between L1 and no penalty (the paper's order)")
    else:
        differ.append(
            f"L2 does not separate from no penalty (index {l2:.3f} against {none:.3f}, {abs(z_l2):.1f} SE): at 1e-4 it "
            "shrinks the weights"
            + (f" (weights below 1e-2: {near_zero})" if near_zero else "")
            + " but leaves the computation as evenly shared as without a penalty. A plausible reason (not tested "
            "here): the penalty is added to the mean cross-entropy and optimised with Adam, whose per-weight step "
            "sizes rescale an L2 gradient, so it acts more weakly than SGD weight decay of the same coefficient"
        )
    if min(index.values()) > max(PAPER_INDEX.values()) or all(index[n] > PAPER_INDEX[n] for n in MLP_MODELS):
        differ.append(
            "all our indices are higher than the paper's and our hub shares larger "
            f"({', '.join(f'{100 * hubs[n]:.0f}%' for n in MLP_MODELS)} against 12/17/34%): computation is more "
            "evenly spread in our networks. Plausible causes: a different data set (Fashion-MNIST here, MNIST in the paper; "
            "its optimiser, epochs and penalty scaling are not all given), and the "
            "index's dependence on how many units are nearly silent"
        )
    lines = []
    if agree:
        lines.append("**Where we agree with the paper:** " + "; ".join(agree) + ".")
    if differ:
        lines.append("")
        lines.append("**Where we do not, and why:** " + " ".join(d[0].upper() + d[1:] + "." for d in differ))
    return lines


def sweep_markdown(sweep: dict[str, Any], budget: Budget, figure: str | None) -> list[str]:
    """The Markdown of the width sweep (lines)."""
    lines = [
        "### Concentration against the hidden width N (the paper's sweep)",
        "",
        f"The same recipe and game for N in {', '.join(map(str, budget.sweep_widths))} and each penalty "
        f"({budget.sweep_permutations} permutations; N = 200 is the section's built-in). Weights: "
        "`python -m training sweep` (kept out of git under `assets/sweep/`).",
        "",
    ]
    table = sweep["table"]
    if sweep["missing"]:
        lines += [f"Not trained here, so left out: {'; '.join(sweep['missing'])} (run `python -m training sweep`).", ""]
    if len(table):
        shown = table.rename(columns={"index_se": "index SE", "hub_share": "hub share", "hub_share_se": "hub share SE"})
        lines += [md_table(shown.set_index(["penalty", "N"]).reset_index()), ""]
        wide = table.pivot(index="N", columns="penalty", values="index").dropna()
        err = table.pivot(index="N", columns="penalty", values="index_se").loc[wide.index]
        if {"l1", "none"} <= set(wide.columns) and len(wide):
            below = int((wide["l1"] < wide["none"]).sum())
            gap = wide["none"] - wide["l1"]
            z = gap / np.hypot(err["none"], err["l1"])
            resolved = [str(n) for n in wide.index[z >= 3]]
            grows = gap.iloc[-1] - gap.iloc[0] > 3 * float(np.hypot(
                np.hypot(err["none"].iloc[-1], err["l1"].iloc[-1]), np.hypot(err["none"].iloc[0], err["l1"].iloc[0])))
            lines += [
                f"L1's index is below the unregularised network's at {below} of {len(wide)} widths, by 3 SE or more at "
                f"N = {', '.join(resolved) or 'none of them'}; the gap is {gap.iloc[-1]:.3f} at N = {wide.index[-1]} "
                f"and {gap.iloc[0]:.3f} at N = {wide.index[0]}"
                + (": the penalty's concentrating effect grows with the number of units." if grows else "."),
                "",
            ]
    if figure:
        lines += [f"![concentration against N]({figure})", ""]
    return lines
