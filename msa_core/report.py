"""The findings report: run the papers' analyses on the built-in models and write ``docs/FINDINGS.md``.

``write_report(out_dir="docs")`` loads the built-in models (``msa_core.zoo.load_builtin``), builds
their games with ``msa_core.lesion_game``, estimates Shapley modes with ``shapley_modes`` (fixed
seeds) and runs the analyses of :mod:`msa_core.analysis`. Every number in the Markdown is formatted
from those results; none is typed in. Figures are PNGs made with matplotlib (``figures/`` next to
the Markdown). ``quick=True`` uses tiny budgets (for tests: seconds, not minutes).

Run it with ``python -m msa_core.report [--out-dir docs] [--quick]`` (or ``msa report``).

The app's Findings page can call the same ``*_findings`` functions and plot their outputs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import lesion_game, per_class_accuracy, shapley_modes
from .analysis import (
    activation_ranking,
    cluster_modes,
    concentration_table,
    layer_modes,
    layer_summary,
    leave_one_out_ranking,
    lesion_cluster,
    lesion_curves,
    pairwise_interactions,
    random_lesion_curve,
    shapley_ranking,
    spatial_frequency_profile,
    specialist_table,
    spectral_centroid,
    units_to_reach,
    weight_norm_ranking,
)
from .objectives import Objective

__all__ = [
    "Budget",
    "write_report",
    "report_main",
    "LanguageLogLikelihood",
    "mlp_game",
    "moe_game",
    "dcgan_game",
    "concentration_findings",
    "lesion_curve_findings",
    "interaction_findings",
    "moe_findings",
    "dcgan_findings",
]

MLP_MODELS = ("mlp-digits-l1", "mlp-digits-l2", "mlp-digits")
PAPER_INDEX = {"mlp-digits-l1": 0.60, "mlp-digits-l2": 0.67, "mlp-digits": 0.77}
PAPER_HUBS = {"mlp-digits-l1": 0.12, "mlp-digits-l2": 0.17, "mlp-digits": 0.34}
CHANCE = 0.1  # balanced accuracy of a 10-class classifier that always answers the same class
CHANCE_MARGIN = 0.05  # "reaches chance" = balanced accuracy at or below chance + this margin


@dataclass(frozen=True)
class Budget:
    """Sampling budgets of one report run (all seeded)."""

    mlp_permutations: int = 200
    random_orders: int = 50
    interaction_units: int = 6
    interaction_permutations: int = 200
    neuron_shapley_permutations: int = 100
    topk: int = 5
    dcgan_latents: int = 16
    dcgan_permutations: int = 24
    dcgan_clusters: int = 4
    moe_words_per_language: int | None = 60  # None: every held-out word (300 per language; slow on a CPU)
    seed: int = 0

    @staticmethod
    def quick() -> "Budget":
        return Budget(
            mlp_permutations=2,
            random_orders=3,
            interaction_units=3,
            interaction_permutations=3,
            neuron_shapley_permutations=3,
            topk=2,
            dcgan_latents=1,
            dcgan_permutations=1,
            dcgan_clusters=2,
            moe_words_per_language=2,
        )


# --------------------------------------------------------------------------- games
def _plain_sequential(model: nn.Module) -> nn.Module:
    """A plain ``nn.Sequential`` holding the same modules (same paths, same weights).

    The zoo's ``DigitsMLP`` subclasses ``nn.Sequential`` with its own ``__init__``, so slicing it
    (which the lesion game's fast paths do) would call that ``__init__`` with the wrong arguments.
    """
    if isinstance(model, nn.Sequential) and type(model) is not nn.Sequential:
        return nn.Sequential(*model).eval()
    return model


def mlp_game(name: str, *, objective: str = "per-class"):
    """The paper's MLP game on a built-in digits MLP: players = the 100 hidden units (zero lesion).

    Args:
        objective: "per-class" (game output ``(10,)``: per-digit accuracy on the 500 held-out
            images) or "balanced" (scalar: mean of the per-digit accuracies).

    Returns:
        ``(game, data)``: the LesionGame and the zoo's data dict.
    """
    from .zoo import default_units, load_builtin

    model, data = load_builtin(name)
    model = _plain_sequential(model)
    accuracy = per_class_accuracy(data["y"], 10, [str(d) for d in range(10)])
    if objective == "balanced":
        base = accuracy

        class Balanced(Objective):
            name = "balanced accuracy"
            additive = True

            def __call__(self, outputs, index=slice(None)):
                return base(outputs, index).mean(-1)

        use: Objective = Balanced()
    else:
        use = accuracy
    game = lesion_game(model, default_units(name), torch.from_numpy(data["x"]), objective=use)
    return game, data


class LanguageLogLikelihood(Objective):
    """Per-language mean log-likelihood per token of held-out words: game output ``(n_languages,)``.

    ``outputs``: logits ``(n_coalitions, n_words, T, V)``. A word's score is its total
    log-likelihood (every character and EOS) divided by its number of predicted tokens; a language's
    value is the mean over its words. Additive over words (``index`` selects a slice of them).
    """

    name = "language log-likelihood"
    additive = True

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, language: torch.Tensor, names: Sequence[str]):
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
        language = torch.as_tensor(language, dtype=torch.int64)
        onehot = torch.nn.functional.one_hot(language, len(names)).to(torch.float64)
        self.weights = onehot / onehot.sum(0).clamp_min(1)  # (n_words, n_languages)
        self.output_labels = [str(n) for n in names]

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        from .zoo.lm import word_log_likelihood

        c, w = outputs.shape[:2]
        tokens = self.tokens[index].to(outputs.device)
        lengths = self.lengths[index].to(outputs.device)
        per_word = word_log_likelihood(
            outputs.reshape(c * w, *outputs.shape[2:]), tokens.repeat(c, 1), lengths.repeat(c)
        ).reshape(c, w).to(torch.float64)
        per_token = per_word / (lengths - 1).to(torch.float64)
        return per_token @ self.weights[index].to(outputs.device)


def moe_game(words_per_language: int | None = None):
    """The MoE game: players = the 8 experts (router outputs of both blocks, lesion "skip").

    Returns ``(game, data, languages)``; the game's output is the per-language mean log-likelihood
    per token ``(5,)`` on held-out words (the first ``words_per_language`` of each language, or all).
    """
    from .lesion import UnitSpec
    from .zoo import default_units, load_builtin

    model, data = load_builtin("moe-lm")
    language = data["language"]
    keep = np.arange(len(language))
    if words_per_language is not None:
        keep = np.concatenate([np.nonzero(language == k)[0][:words_per_language] for k in range(len(data["languages"]))])
    tokens = torch.from_numpy(data["tokens"][keep])
    lengths = torch.from_numpy(data["lengths"][keep])
    names = [str(n) for n in data["languages"]]
    objective = LanguageLogLikelihood(tokens, lengths, torch.from_numpy(language[keep]), names)
    units = [UnitSpec(path, kind="expert", lesion="skip", label=f"L{path.split('.')[1]}") for path in default_units("moe-lm")]
    game = lesion_game(model, units, tokens, objective=objective, lesion="skip")
    return game, data, names


def dcgan_game(n_latents: int = 16):
    """The DCGAN game: players = every channel of ``net.0``, ``net.1``, ``net.2`` (zero lesion);
    output = the generated images ``(n_latents, 1, 32, 32)`` for the first ``n_latents`` fixed latents."""
    from .zoo import all_block_paths, load_builtin

    model, data = load_builtin("dcgan-digits")
    z = torch.from_numpy(data["z"][:n_latents])
    return lesion_game(model, all_block_paths("dcgan-digits"), z), data


# --------------------------------------------------------------------------- analyses
def concentration_findings(budget: Budget) -> dict[str, Any]:
    """Shapley modes of the three MLPs and their concentration (per run and per digit)."""
    out: dict[str, Any] = {"results": {}, "tables": {}, "accuracy": {}}
    for name in MLP_MODELS:
        game, data = mlp_game(name)
        result = shapley_modes(
            game, game.n_players, n_permutations=budget.mlp_permutations, seed=budget.seed, unit_labels=game.unit_labels
        )
        out["results"][name] = result
        out["tables"][name] = concentration_table(result, output_labels=[str(d) for d in range(10)])
        out["accuracy"][name] = float(result.intact.mean())
    summary = pd.DataFrame(
        {
            "balanced accuracy": [out["accuracy"][n] for n in MLP_MODELS],
            "index (ours)": [out["tables"][n].loc["all", "distributed_index"] for n in MLP_MODELS],
            "index (paper, N=200)": [PAPER_INDEX[n] for n in MLP_MODELS],
            "hub share (ours)": [out["tables"][n].loc["all", "hub_share"] for n in MLP_MODELS],
            "hub share (paper)": [PAPER_HUBS[n] for n in MLP_MODELS],
            "per-digit index (mean)": [out["tables"][n]["distributed_index"].iloc[1:].mean() for n in MLP_MODELS],
            "per-digit hub share (mean)": [out["tables"][n]["hub_share"].iloc[1:].mean() for n in MLP_MODELS],
            "max stderr of a mode entry": [float(out["results"][n].stderr.max()) for n in MLP_MODELS],
        },
        index=pd.Index(list(MLP_MODELS), name="model"),
    )
    out["summary"] = summary
    return out


def _units_to_half(curve, label: str, n_players: int) -> str:
    """Units removed until balanced accuracy is halfway between intact and chance (random: median)."""
    if label == "random":
        curves = curve.extra["curves"]
        half = (curves[:, 0] + CHANCE) / 2
        hits = [units_to_reach(c, h) for c, h in zip(curves, half)]
        return f"{np.median([n_players if h is None else h for h in hits]):.0f}"
    reach = units_to_reach(curve, (curve.values[0] + CHANCE) / 2)
    return "never" if reach is None else str(reach)


def lesion_curve_findings(results: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Lesion curves on every MLP (balanced accuracy) for six rankings, with units needed to reach chance."""
    out: dict[str, Any] = {"curves": {}, "table": None}
    rows = []
    level = CHANCE + CHANCE_MARGIN
    for name in MLP_MODELS:
        game, _ = mlp_game(name, objective="balanced")
        result = results[name]
        orders = {
            "Shapley (descending)": shapley_ranking(result),
            "Shapley (ascending)": shapley_ranking(result, descending=False),
            "activation (mean abs)": activation_ranking(game),
            "weight norm (in x out)": weight_norm_ranking(game, direction="both"),
            "leave-one-out": leave_one_out_ranking(game),
        }
        curves = lesion_curves(game, orders)
        curves["random"] = random_lesion_curve(game, n_orders=budget.random_orders, seed=budget.seed)
        out["curves"][name] = curves
        rand_each = [units_to_reach(c, level) for c in curves["random"].extra["curves"]]
        rand_each = [n_ if n_ is not None else game.n_players for n_ in rand_each]
        for label, curve in curves.items():
            reach = curve.units_to_reach(level)
            rows.append(
                {
                    "model": name,
                    "ranking": label,
                    "AUC": curve.auc,
                    "after 10 removed": float(curve.values[min(10, len(curve.values) - 1)]),
                    "units to half": _units_to_half(curve, label, game.n_players),
                    "units to chance": (
                        f"{np.median(rand_each):.0f} (5-95%: {np.percentile(rand_each, 5):.0f}-{np.percentile(rand_each, 95):.0f})"
                        if label == "random"
                        else ("never" if reach is None else str(reach))
                    ),
                }
            )
    out["table"] = pd.DataFrame(rows)
    out["level"] = level
    return out


def neuron_shapley_findings(results: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Truncated sampling and the top-k bandit on mlp-digits, compared with plain permutation sampling."""
    from .estimators import METHODS
    from .estimators.topk import TopKEstimator
    from .estimators.truncated import TruncatedEstimator

    METHODS.setdefault("truncated", TruncatedEstimator)
    METHODS.setdefault("topk", TopKEstimator)
    game, _ = mlp_game("mlp-digits")
    reference = results["mlp-digits"]
    ref_total = reference.total_contribution().numpy()
    ref_top = sorted(np.argsort(-ref_total)[: budget.topk].tolist())
    plain = shapley_modes(game, game.n_players, n_permutations=budget.neuron_shapley_permutations, seed=budget.seed + 1)
    truncated = shapley_modes(
        game, game.n_players, method="truncated", n_permutations=budget.neuron_shapley_permutations,
        seed=budget.seed + 1, estimator_options={"tolerance": 0.05},
    )
    topk = shapley_modes(
        game, game.n_players, method="topk", n_permutations=budget.neuron_shapley_permutations,
        seed=budget.seed + 1, estimator_options={"k": budget.topk, "value_range": 2.0},
    )
    corr = lambda r: float(np.corrcoef(r.total_contribution().numpy(), ref_total)[0, 1])  # noqa: E731
    info = topk.metadata["topk"]
    return {
        "reference_top": ref_top,
        "table": pd.DataFrame(
            [
                {"method": "permutation", "evaluations": plain.n_evaluations, "corr. with reference": corr(plain),
                 "efficiency gap": plain.efficiency_gap()},
                {"method": "truncated (tol 5%)", "evaluations": truncated.n_evaluations,
                 "corr. with reference": corr(truncated), "efficiency gap": truncated.efficiency_gap()},
                {"method": f"top-{budget.topk} bandit", "evaluations": topk.n_evaluations,
                 "corr. with reference": corr(topk), "efficiency gap": float("nan")},
            ]
        ).set_index("method"),
        "topk": info,
        "topk_agrees": info["top_k"] == ref_top,
        "skipped": truncated.metadata["truncation"]["skipped_fraction"],
    }


def interaction_findings(results: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Pairwise interactions of the top Shapley units of mlp-digits (balanced accuracy)."""
    game, _ = mlp_game("mlp-digits", objective="balanced")
    top = shapley_ranking(results["mlp-digits"])[: budget.interaction_units]
    inter = pairwise_interactions(game, top, n_permutations=budget.interaction_permutations, seed=budget.seed)
    frame = inter.to_frame().sort_values("gamma", key=np.abs, ascending=False).reset_index(drop=True)
    frame["|gamma| / stderr"] = frame["gamma"].abs() / frame["stderr"].replace(0, np.nan)
    return {"result": inter, "table": frame}


def moe_findings(budget: Budget) -> dict[str, Any]:
    """Exact Shapley values of the 8 experts per language, specialists and their lesion effect."""
    game, data, names = moe_game(budget.moe_words_per_language)
    result = shapley_modes(game, game.n_players, method="exact", unit_labels=game.unit_labels)
    table = specialist_table(result, game, k=2, output_labels=names, scale="relative")
    return {"result": result, "table": table, "languages": names, "n_words": game.n_inputs}


def dcgan_findings(budget: Budget) -> dict[str, Any]:
    """Modes of all channels of the DCGAN's three blocks: layer summaries, spectra and a cluster lesion."""
    game, _ = dcgan_game(budget.dcgan_latents)
    result = shapley_modes(
        game, game.n_players, n_permutations=budget.dcgan_permutations, seed=budget.seed, unit_labels=game.unit_labels
    )
    per_unit = spatial_frequency_profile(result, per_unit=True)
    summed = spatial_frequency_profile(result, per_unit=False)
    freqs = np.asarray(per_unit.columns, dtype=float)
    high = freqs >= 0.25  # above half the Nyquist frequency: detail at the scale of 1-4 pixels
    labels = cluster_modes(result, budget.dcgan_clusters, seed=budget.seed)
    values = result.values.numpy()
    norms = [np.linalg.norm(values[labels == c].sum(0)) for c in range(budget.dcgan_clusters)]
    chosen = int(np.argmax(norms))
    lesion = lesion_cluster(game, np.nonzero(labels == chosen)[0])
    layers = [l.rsplit(":", 1)[0] for l in result.unit_labels]
    composition = pd.Series([layers[i] for i in np.nonzero(labels == chosen)[0]]).value_counts()
    return {
        "result": result,
        "layer_summary": layer_summary(result),
        "layer_modes": layer_modes(result),
        "profile_units": per_unit,
        "profile_summed": summed,
        "centroid_units": spectral_centroid(per_unit),
        "centroid_summed": spectral_centroid(summed),
        "high_share_units": per_unit.loc[:, high].sum(axis=1),
        "high_share_summed": summed.loc[:, high].sum(axis=1),
        "clusters": labels,
        "cluster": chosen,
        "cluster_composition": composition,
        "cluster_lesion": lesion,
    }


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return f"figures/{path.name}"


def _fig_concentration(conc: dict[str, Any], folder: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [1.1, 2, 2, 2]})
    s = conc["summary"]
    x = np.arange(len(s))
    axes[0].bar(x - 0.2, s["index (ours)"], 0.4, label="distributed-computation index")
    axes[0].bar(x + 0.2, s["hub share (ours)"], 0.4, label="hub share (80%)")
    axes[0].set_xticks(x, [n.replace("mlp-digits", "") or "none" for n in s.index])
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    axes[0].set_title("concentration (ours)")
    vmax = max(float(np.abs(r.values.numpy()).max()) for r in conc["results"].values())
    for ax, name in zip(axes[1:], MLP_MODELS):
        values = conc["results"][name].values.numpy()
        order = np.argsort(-values.mean(1))
        im = ax.imshow(values[order].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"{name} modes", fontsize=10)
        ax.set_xlabel("hidden unit (ranked by mean contribution)", fontsize=8)
        ax.set_ylabel("digit")
    fig.colorbar(im, ax=axes[1:], shrink=0.8, label="Shapley value (accuracy)")
    return _save(fig, folder / "mlp_concentration.png")


def _fig_lesion_curves(curves_by_model: dict[str, Any], level: float, folder: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves_by_model), figsize=(5.2 * len(curves_by_model), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    styles = {
        "Shapley (descending)": ("C3", "-"), "Shapley (ascending)": ("C3", ":"), "activation (mean abs)": ("C0", "-"),
        "weight norm (in x out)": ("C2", "-"), "leave-one-out": ("C4", "--"), "random": ("0.3", "-"),
    }
    for ax, (name, curves) in zip(axes, curves_by_model.items()):
        for label, curve in curves.items():
            color, ls = styles.get(label, ("k", "-"))
            ax.plot(curve.n_removed, curve.values, color=color, ls=ls, label=label, lw=1.6)
            if curve.lower is not None:
                ax.fill_between(curve.n_removed, curve.lower, curve.upper, color=color, alpha=0.2)
        ax.axhline(level, color="k", lw=0.6, ls="--")
        ax.set_title(name)
        ax.set_xlabel("units removed")
    axes[0].set_ylabel("balanced accuracy")
    axes[0].legend(fontsize=7)
    return _save(fig, folder / "mlp_lesion_curves.png")


def _fig_moe(moe: dict[str, Any], folder: Path) -> str:
    plt = _plt()
    result, names, table = moe["result"], moe["languages"], moe["table"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    values = result.values.numpy()
    spread = (result.intact - result.empty).numpy()
    rel = values / spread[None, :]
    vmax = float(np.abs(rel).max())
    im = axes[0].imshow(rel, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    axes[0].set_xticks(range(len(names)), names, rotation=30)
    axes[0].set_yticks(range(len(result.unit_labels)), result.unit_labels)
    axes[0].set_title("expert Shapley value / (v(N) - v(empty)) per language")
    fig.colorbar(im, ax=axes[0])
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, table["target_drop"], 0.4, label="drop on the language")
    axes[1].bar(x + 0.2, table["other_drop"], 0.4, label="mean drop on the others")
    axes[1].set_xticks(x, names, rotation=30)
    axes[1].set_ylabel("log-likelihood drop (nats/token)")
    axes[1].set_title("lesioning each language's top-2 specialist experts")
    axes[1].legend(fontsize=8)
    return _save(fig, folder / "moe_specialists.png")


def _fig_dcgan(dc: dict[str, Any], folder: Path) -> tuple[str, str]:
    plt = _plt()
    modes = dc["layer_modes"]
    result = dc["result"]
    n_show = min(4, result.values.shape[1])
    fig, axes = plt.subplots(n_show, len(modes) + 1, figsize=(2.1 * (len(modes) + 1), 2.1 * n_show), squeeze=False)
    intact = result.intact.numpy()
    for r in range(n_show):
        axes[r, 0].imshow(intact[r, 0], cmap="gray", vmin=-1, vmax=1)
        axes[r, 0].set_title("intact" if r == 0 else "")
        for c, (layer, mode) in enumerate(modes.items(), start=1):
            v = float(np.abs(mode[r, 0]).max()) or 1.0
            axes[r, c].imshow(mode[r, 0], cmap="RdBu_r", vmin=-v, vmax=v)
            if r == 0:
                axes[r, c].set_title(f"sum of {layer} modes")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    first = _save(fig, folder / "dcgan_layer_modes.png")

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for layer, row in dc["profile_units"].iterrows():
        axes[0].plot(np.asarray(row.index, float), row.values, marker="o", ms=3, label=layer)
    axes[0].set_xlabel("spatial frequency (cycles/pixel)")
    axes[0].set_ylabel("share of power (log)")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].set_title("power spectrum of single-unit modes, per layer")
    axes[0].legend()
    for layer, row in dc["profile_summed"].iterrows():
        axes[1].plot(np.asarray(row.index, float), row.values, marker="o", ms=3, label=layer)
    axes[1].set_xlabel("spatial frequency (cycles/pixel)")
    axes[1].set_title("power spectrum of each layer's summed mode")
    axes[1].legend()
    lesion = dc["cluster_lesion"]
    strip = np.concatenate([lesion["intact"][0, 0], lesion["lesioned"][0, 0], lesion["difference"][0, 0]], axis=1)
    axes[2].imshow(strip, cmap="gray")
    axes[2].set_title(f"cluster {dc['cluster']}: intact | lesioned | difference")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    second = _save(fig, folder / "dcgan_spectra.png")
    return first, second


# --------------------------------------------------------------------------- markdown
def _md_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A pipe table (no tabulate dependency)."""
    frame = frame.reset_index() if frame.index.name is not None else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"

    def fmt(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "nan" if math.isnan(value) else format(float(value), floatfmt)
        return str(value)

    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _rank_phrase(values: dict[str, float]) -> str:
    ordered = sorted(values, key=values.get)
    return " < ".join(f"{n} ({values[n]:.3f})" for n in ordered)


def write_report(out_dir: str | Path = "docs", *, quick: bool = False, budget: Budget | None = None) -> Path:
    """Run every analysis on the built-in models and write ``<out_dir>/FINDINGS.md`` with PNG figures.

    Args:
        out_dir: folder for ``FINDINGS.md``; figures go to ``<out_dir>/figures``.
        quick: tiny budgets (for tests); the numbers are then not meaningful.
        budget: explicit budgets (overrides ``quick``).

    Returns:
        The path of the Markdown file.
    """
    started = time.perf_counter()
    budget = budget or (Budget.quick() if quick else Budget())
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(budget.seed)
    timings: dict[str, float] = {}

    def timed(key, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        timings[key] = time.perf_counter() - t0
        return value

    conc = timed("MLP modes and concentration", concentration_findings, budget)
    curves = timed("lesion curves", lesion_curve_findings, conc["results"], budget)
    neuron = timed("Neuron Shapley estimators", neuron_shapley_findings, conc["results"], budget)
    inter = timed("interactions", interaction_findings, conc["results"], budget)
    moe = timed("MoE experts", moe_findings, budget)
    dc = timed("DCGAN modes", dcgan_findings, budget)

    fig_conc = _fig_concentration(conc, figures)
    fig_curves = _fig_lesion_curves(curves["curves"], curves["level"], figures)
    fig_moe = _fig_moe(moe, figures)
    fig_dc_modes, fig_dc_spectra = _fig_dcgan(dc, figures)

    s = conc["summary"]
    index = {n: float(s.loc[n, "index (ours)"]) for n in MLP_MODELS}
    hubs = {n: float(s.loc[n, "hub share (ours)"]) for n in MLP_MODELS}
    paper_order = ["mlp-digits-l1", "mlp-digits-l2", "mlp-digits"]
    ours_order = sorted(MLP_MODELS, key=index.get)
    same_order = ours_order == paper_order
    hub_order = sorted(MLP_MODELS, key=hubs.get)
    per_digit = pd.DataFrame({n: conc["tables"][n]["distributed_index"].iloc[1:] for n in MLP_MODELS})
    per_digit.index.name = "digit"
    digit_order_holds = int(
        ((per_digit["mlp-digits-l1"] < per_digit["mlp-digits-l2"]) & (per_digit["mlp-digits-l2"] < per_digit["mlp-digits"])).sum()
    )
    from .zoo import assets_dir

    weights_note = ""
    try:
        import json

        scores = json.loads((assets_dir() / "scores.json").read_text())
        weights_note = ", ".join(
            f"{n}: {100 * scores[n]['frac_weights_below_1e-2']:.0f}%" for n in MLP_MODELS if n in scores
        )
    except (OSError, KeyError, ValueError):
        pass

    lines: list[str] = []
    add = lines.append
    add("# Findings: the papers' analyses on the built-in models")
    add("")
    add(
        "Generated by `python -m msa_core.report` (`msa report`) from seeded runs"
        + (" in **quick mode (tiny budgets: the numbers below are not meaningful)**" if quick else "")
        + f"; every number below is computed by that command. Total time {time.perf_counter() - started:.0f} s "
        f"on this machine ({', '.join(f'{k}: {v:.0f} s' for k, v in timings.items())})."
    )
    add("")
    add(
        f"Budgets: {budget.mlp_permutations} permutations per MLP, {budget.random_orders} random lesion orders, "
        f"{budget.interaction_permutations} permutations for interactions, exact values for the MoE experts, "
        f"{budget.dcgan_permutations} permutations for the DCGAN ({budget.dcgan_latents} latents); seed {budget.seed}."
    )
    add("")

    # ---- 1. concentration
    add("## 1. Hub concentration in the digits MLPs (Dixit et al. 2025)")
    add("")
    add(
        "Game: per-digit accuracy (a 10-vector) of a 64-100-10 LeakyReLU MLP on 500 held-out 8x8 digits; "
        "players: the 100 hidden units, lesioned to zero. The *index of distributed computation* is the "
        "normalised Shannon entropy of `p_i = c_i^2 / sum_j c_j^2`, with `c_i` unit i's mode averaged over "
        "the ten digits (1 = all units contribute equally, 0 = one unit does everything); the *hub share* is "
        "the smallest fraction of units whose `|c_i|` carry 80% of `sum |c_i|`."
    )
    add("")
    add(_md_table(s))
    add("")
    verdict = (
        f"**Ours: {_rank_phrase(index)}.** "
        + (
            "This is the paper's order (L1 < L2 < none): regularisation concentrates computation in fewer hubs, "
            "and L1 more than L2."
            if same_order
            else "This is **not** the paper's order (L1 < L2 < none). "
        )
    )
    add(verdict)
    spread_ours = max(index.values()) - min(index.values())
    add(
        f"Our indices span {spread_ours:.3f} (paper: {max(PAPER_INDEX.values()) - min(PAPER_INDEX.values()):.2f}) and "
        f"are {'higher' if min(index.values()) > max(PAPER_INDEX.values()) else 'not uniformly higher'} than the "
        "paper's: computation in our small 8x8-digit networks is more evenly spread, and the effect of "
        "regularisation on it is small."
    )
    if not same_order:
        add(
            "Why ours can differ: our network is much smaller (64 inputs, 100 hidden units, 1,797 8x8 images) "
            "than the paper's MNIST MLP (784 inputs, N up to 200); with so few inputs the penalties (1e-4) "
            "barely constrain which hidden units are used"
            + (f" (weights below 1e-2 after training: {weights_note})" if weights_note else "")
            + ", so the trained networks differ mainly by chance rather than by regularisation strength; and "
            f"the differences between our indices are of the order of the sampling error of "
            f"{budget.mlp_permutations} permutations."
        )
    add("")
    add(
        f"Hub share, smallest first: {' < '.join(f'{n} ({100 * hubs[n]:.0f}%)' for n in hub_order)} "
        f"(paper: 12% L1, 17% L2, 34% none). Per digit, the paper's order L1 < L2 < none holds for "
        f"{digit_order_holds} of 10 digits:"
    )
    add("")
    add(_md_table(per_digit))
    add("")
    add(f"![concentration and modes]({fig_conc})")
    add("")

    # ---- 2. lesion curves
    table = curves["table"]
    add("## 2. Lesion curves: Shapley-ranked removal against other rankings (Ghorbani & Zou 2020)")
    add("")
    add(
        "Game: balanced accuracy (mean of the per-digit accuracies; chance = 0.1). Units are removed "
        "cumulatively in the order of each ranking: Shapley value (sum of the mode over digits, from section 1), "
        "mean |activation| over the inputs, the product of incoming and outgoing weight norms, "
        f"single-unit leave-one-out drop, and {budget.random_orders} random orders (mean with a 5-95% band). "
        f"'Units to chance' is the fewest removed units that bring balanced accuracy to {curves['level']:.2f} "
        "(chance + 0.05) or below, 'units to half' those that bring it halfway from intact to chance "
        "(random: the median over orders); AUC is the mean accuracy over the whole removal (lower = the ranking "
        "finds the responsible units sooner)."
    )
    add("")
    add(_md_table(table.set_index(["model", "ranking"]).reset_index()))
    add("")
    for name in MLP_MODELS:
        sub = table[table["model"] == name].set_index("ranking")
        shap_auc = sub.loc["Shapley (descending)", "AUC"]
        others = sub.drop(index=["Shapley (descending)", "Shapley (ascending)"])
        best_other = others["AUC"].idxmin()
        beats = bool((others["AUC"] > shap_auc).all())
        add(
            f"- **{name}**: Shapley-ranked removal reaches chance after {sub.loc['Shapley (descending)', 'units to chance']} "
            f"units; random orders need {sub.loc['random', 'units to chance']}, activation "
            f"{sub.loc['activation (mean abs)', 'units to chance']}, weight norm {sub.loc['weight norm (in x out)', 'units to chance']}, "
            f"leave-one-out {sub.loc['leave-one-out', 'units to chance']}. AUC {shap_auc:.3f} for Shapley against "
            f"{best_other} {others.loc[best_other, 'AUC']:.3f} (the best other ranking): "
            + ("Shapley destroys accuracy fastest, as Neuron Shapley claims." if beats else
               f"Shapley is **not** the fastest here; {best_other} is.")
        )
    add("")
    add(f"![lesion curves]({fig_curves})")
    add("")

    # ---- 2b. estimators
    add("### Neuron Shapley's estimators on mlp-digits")
    add("")
    add(
        f"Against the {budget.mlp_permutations}-permutation run of section 1 (reference), with "
        f"{budget.neuron_shapley_permutations} permutations' budget each (a different seed): truncated sampling "
        f"skipped {100 * neuron['skipped']:.0f}% of the chain evaluations; the top-{budget.topk} bandit "
        f"({'resolved' if neuron['topk']['resolved'] else 'not resolved within the budget'}, "
        f"{neuron['topk']['rounds']} rounds) names units {neuron['topk']['top_k']}, the reference's top {budget.topk} "
        f"are {neuron['reference_top']} ({'the same' if neuron['topk_agrees'] else 'not the same'})."
    )
    add("")
    add(_md_table(neuron["table"]))
    add("")

    # ---- 2c. interactions
    inter_table = inter["table"].head(8)
    add("### Pairwise interactions of the top units (mlp-digits, balanced accuracy)")
    add("")
    add(
        "`gamma_ij = phi_{ij merged} - phi_i(N - j) - phi_j(N - i)` (Keinan et al. 2004, as msapy computes it), "
        f"for the {budget.interaction_units} units with the largest Shapley values, all pairs from one run of "
        f"{budget.interaction_permutations} shared permutations ({inter['result'].n_evaluations:,} evaluations). "
        "Positive = synergy (the pair does more together than apart), negative = redundancy. Strongest pairs:"
    )
    add("")
    add(_md_table(inter_table))
    add("")
    n_red = int((inter["table"]["gamma"] < 0).sum())
    add(
        f"{n_red} of {len(inter['table'])} pairs are redundant (gamma < 0): the strongest units of this network "
        "partly do the same job, so lesioning one of them is cushioned by the others."
        if n_red * 2 >= len(inter["table"])
        else f"{len(inter['table']) - n_red} of {len(inter['table'])} pairs are synergistic (gamma > 0)."
    )
    add("")

    # ---- 3. MoE
    mt = moe["table"]
    add("## 3. Language-specific experts in moe-lm (the paper's Mixtral experiment, scaled down)")
    add("")
    add(
        f"Game: mean log-likelihood per token (nats) of {moe['n_words']} held-out words, per language (a 5-vector); "
        "players: the 4 experts of each of the 2 MoE blocks (8 in all, labels `L<block>:<expert>`), lesioned by "
        "skipping (router logit set to -inf); exact Shapley values (all 256 coalitions). Specificity of an expert "
        "for a language: its Shapley value for that language minus its mean value for the others, each divided "
        "by the language's total `v(N) - v(empty)`. Then the top-2 specialists of each language are lesioned "
        "together:"
    )
    add("")
    add(_md_table(mt))
    add("")
    best = mt["selectivity"].idxmax()
    add(
        f"Most selective: lesioning {mt.loc[best, 'specialists']} drops {best} from {mt.loc[best, 'intact']:.3f} to "
        f"{mt.loc[best, 'lesioned']:.3f} nats/token ({mt.loc[best, 'target_drop']:.3f}) while the other languages "
        f"drop by {mt.loc[best, 'other_drop']:.3f} on average. "
        f"{int((mt['selectivity'] > 0).sum())} of {len(mt)} languages lose more than the others when their own "
        "specialists are lesioned"
        + (
            f". The margins are small, though: mean selectivity {mt['selectivity'].mean():.3f} against a mean drop of "
            f"{mt['target_drop'].mean():.3f} on the lesioned language, so specialisation in this 8-expert model is weak "
            "next to the paper's Mixtral German experts (1.0 -> 0.27)."
            if mt["selectivity"].mean() < 0.5 * mt["target_drop"].mean()
            else ": the experts are language-specific, as the paper found for Mixtral (German 1.0 -> 0.27)."
        )
    )
    add("")
    add(f"![MoE experts]({fig_moe})")
    add("")

    # ---- 4. DCGAN
    ls = dc["layer_summary"]
    cu, cs = dc["centroid_units"], dc["centroid_summed"]
    hu, hs = dc["high_share_units"], dc["high_share_summed"]
    dct = pd.DataFrame(
        {
            "units": ls["n_units"],
            "share of abs total": ls["share"],
            "mean abs phi per unit": ls["mean_abs"],
            "summed-mode norm": ls["mode_norm"],
            "centroid, single modes": cu,
            "high-freq share, single modes": hu,
            "centroid, summed mode": cs,
            "high-freq share, summed mode": hs,
        }
    )
    dct.index.name = "layer"
    add("## 4. The DCGAN's layer-by-layer modes: the order of pixel generation")
    add("")
    add(
        f"Game: the generated 32x32 images for {budget.dcgan_latents} fixed latents (a "
        f"{budget.dcgan_latents}x1x32x32 tensor); players: all {dc['result'].n_players} channels of the three "
        "hidden blocks (net.0 at 4x4, net.1 at 8x8, net.2 at 16x16), lesioned to zero. For each layer we take "
        "the radially averaged power spectrum of the modes (mean removed, normalised to total 1) and report its "
        "centroid (cycles/pixel; Nyquist = 0.5) and the share of power at >= 0.25 cycles/pixel, both for single "
        "units' modes (what one channel paints) and for the layer's summed mode (what the layer paints)."
    )
    add("")
    add(_md_table(dct))
    add("")
    order_units = list(cu.sort_values().index)
    coarse_to_fine = order_units == list(ls.index)
    add(
        f"Single-unit modes, from lowest to highest centroid: {' < '.join(f'{l} ({cu[l]:.3f})' for l in order_units)}. "
        + (
            "Deeper blocks paint finer detail: a coarse-to-fine hierarchy, following the upsampling. "
            if coarse_to_fine
            else "This is not a plain coarse-to-fine order along depth: "
            + "; ".join(
                f"{a} (earlier) paints finer detail than {b}"
                for k, a in enumerate(ls.index)
                for b in list(ls.index)[k + 1 :]
                if cu[a] > cu[b]
            )
            + ", an inversion of the hierarchy like the one Dixit et al. report for their DCGAN. "
        )
        + f"The layer with the largest summed contribution is {ls['share'].idxmax()} "
        f"({100 * ls['share'].max():.0f}% of the summed |total|)."
    )
    add("")
    comp = ", ".join(f"{k}: {v}" for k, v in dc["cluster_composition"].items())
    add(
        f"Clustering the {dc['result'].n_players} modes by correlation ({budget.dcgan_clusters} clusters, average "
        f"linkage) and lesioning the cluster with the largest summed mode (cluster {dc['cluster']}; {comp}) "
        f"changes the images by {float(np.abs(dc['cluster_lesion']['difference']).mean()):.3f} on average per pixel "
        "(pixel range -1..1)."
    )
    add("")
    add(f"![DCGAN layer modes]({fig_dc_modes})")
    add("")
    add(f"![DCGAN spectra and a cluster lesion]({fig_dc_spectra})")
    add("")

    path = out_dir / "FINDINGS.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def report_main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``msa report [--out-dir DIR] [--quick]``; returns an exit code."""
    parser = argparse.ArgumentParser(prog="msa report", description="Reproduce the papers' findings on the built-in models.")
    parser.add_argument("--out-dir", default="docs", help="folder for FINDINGS.md and figures/ (default: docs)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    args = parser.parse_args(list(argv) if argv is not None else None)
    path = write_report(args.out_dir, quick=args.quick)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(report_main(sys.argv[1:]))
