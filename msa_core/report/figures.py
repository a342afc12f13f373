"""Figures of the findings report (PNG, matplotlib with the Agg backend), written to ``<out_dir>/figures``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["fig_concentration", "fig_sweep", "fig_lesion_curves", "fig_moe", "fig_dcgan"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return f"figures/{path.name}"


def fig_concentration(conc: dict[str, Any], folder: Path) -> str:
    """Bars of index and hub share (with SE) and the three runs' modes, units ranked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [1.1, 2, 2, 2], "wspace": 0.45})
    s = conc["summary"]
    x = np.arange(len(s))
    axes[0].bar(x - 0.2, s["index (ours)"], 0.4, yerr=s["index SE"], label="distributed-computation index")
    axes[0].bar(x + 0.2, s["hub share (ours)"], 0.4, yerr=s["hub share SE"], label="hub share (80%)")
    axes[0].scatter(x - 0.2, s["index (paper)"], marker="_", s=300, color="k", label="paper", zorder=3)
    axes[0].scatter(x + 0.2, s["hub share (paper)"], marker="_", s=300, color="k", zorder=3)
    axes[0].set_xticks(x, [n.replace("mlp-fashion", "").lstrip("-") or "none" for n in s.index])
    axes[0].set_ylim(0, 1)
    axes[0].set_xlabel("penalty")
    axes[0].set_ylabel("index / share of units")
    # below the panel: inside it would cover the bars, which reach 0.9
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    axes[0].set_title("concentration (ours; paper: black)")
    records = conc["records"]
    vmax = max(float(np.abs(r.result.values.numpy()).max()) for r in records.values())
    for panel, (ax, name) in enumerate(zip(axes[1:], s.index)):
        values = records[name].result.values.numpy()
        order = np.argsort(-values.mean(1))
        # nearest: each cell is one (unit, class) value; smoothing would invent values between classes
        im = ax.imshow(values[order].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name} modes (run {records[name].short_id})", fontsize=9)
        ax.set_xlabel("hidden unit (ranked by mean contribution)", fontsize=8)
        labels = records[name].result.metadata.get("output_labels") or list(range(values.shape[1]))
        # the classes are the same in every panel: named once, on the first
        ax.set_yticks(range(values.shape[1]), [str(label) for label in labels] if panel == 0 else [], fontsize=7)
        ax.set_ylabel("class" if panel == 0 else "class (as on the left)")
    fig.colorbar(im, ax=axes[1:], shrink=0.8, label="Shapley value (accuracy)")
    return _save(fig, folder / "mlp_concentration.png")


def fig_sweep(table: pd.DataFrame, folder: Path) -> str | None:
    """Index and hub share against the hidden width N, one line per penalty, with SE bars (like the paper's)."""
    if table.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for penalty, rows in table.groupby("penalty", sort=False):
        rows = rows.sort_values("N")
        axes[0].errorbar(rows["N"], rows["index"], yerr=rows["index_se"], marker="o", capsize=3, label=penalty)
        axes[1].errorbar(rows["N"], 100 * rows["hub_share"], yerr=100 * rows["hub_share_se"], marker="o", capsize=3, label=penalty)
    for ax, label in zip(axes, ("index of distributed computation", "hub share (% of units for 80%)")):
        ax.set_xscale("log")
        ax.set_xlabel("hidden units N")
        ax.set_ylabel(label)
        ax.legend(title="penalty")
    axes[0].set_title("distributed computation against N")
    axes[1].set_title("hub share against N")
    return _save(fig, folder / "mlp_sweep.png")


def fig_lesion_curves(curves_by_model: dict[str, Any], level: float, folder: Path) -> str:
    """One panel per model: balanced accuracy against units removed, per ranking."""
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
        ax.axhline(level, color="k", lw=0.6, ls="--", label=f"chance + 0.05 ({level:.2f})")
        ax.set_title(name)
        ax.set_xlabel("units removed")
    axes[0].set_ylabel("balanced accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    # one legend under the panels: inside one it covers the curves
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=8, frameon=False)
    return _save(fig, folder / "mlp_lesion_curves.png")


def fig_moe(moe: dict[str, Any], folder: Path) -> str:
    """Expert values per language (relative) and the specialist lesions."""
    plt = _plt()
    result, names, table = moe["result"], moe["languages"], moe["table"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    values = result.values.numpy()
    spread = (result.intact - result.empty).numpy()
    rel = values / spread[None, :]
    vmax = float(np.abs(rel).max())
    im = axes[0].imshow(rel, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    axes[0].set_xticks(range(len(names)), names, rotation=30)
    axes[0].set_yticks(range(len(result.unit_labels)), result.unit_labels)
    axes[0].set_title("expert Shapley value / (v(N) - v(empty)) per language")
    axes[0].set_xlabel("language")
    axes[0].set_ylabel("expert (router output)")
    fig.colorbar(im, ax=axes[0], label="share of the language's v(N) - v(empty)")
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, table["target_drop"], 0.4, label="drop on the language")
    axes[1].bar(x + 0.2, table["other_drop"], 0.4, label="mean drop on the others")
    axes[1].set_xticks(x, names, rotation=30)
    axes[1].set_xlabel("language whose specialists are lesioned")
    axes[1].set_ylabel("log-likelihood drop (nats/token)")
    axes[1].set_title("lesioning each language's top-2 specialist experts")
    axes[1].legend(fontsize=8)
    return _save(fig, folder / "moe_specialists.png")


def fig_dcgan(dc: dict[str, Any], folder: Path) -> tuple[str, str]:
    """Summed layer modes next to the intact images; spectra and a cluster lesion."""
    plt = _plt()
    modes = dc["layer_modes"]
    result = dc["result"]
    n_show = min(4, result.values.shape[1])
    fig, axes = plt.subplots(n_show, len(modes) + 1, figsize=(2.1 * (len(modes) + 1), 2.1 * n_show), squeeze=False)
    intact = result.intact.numpy()
    for r in range(n_show):
        axes[r, 0].imshow(intact[r, 0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        axes[r, 0].set_title("intact" if r == 0 else "")
        for c, (layer, mode) in enumerate(modes.items(), start=1):
            v = float(np.abs(mode[r, 0]).max()) or 1.0
            axes[r, c].imshow(mode[r, 0], cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(f"sum of {layer} modes", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(n_show):
        axes[r, 0].set_ylabel(f"latent {r}")
    for c in range(len(modes) + 1):
        axes[-1, c].set_xlabel("32 x 32 pixels", fontsize=8)
    fig.supxlabel("modes: red raises the pixel, blue lowers it (each image scaled to its own maximum)", fontsize=8)
    first = _save(fig, folder / "dcgan_layer_modes.png")

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    # the lowest bin holds frequency 0 only, and the modes' mean is removed: its power is ~1e-32, not data
    profiles = [dc["profile_units"].iloc[:, 1:], dc["profile_summed"].iloc[:, 1:]]
    positive = np.concatenate([p.to_numpy().ravel() for p in profiles])
    positive = positive[positive > 0]
    low = float(positive.min()) / 2 if positive.size else 1e-6
    titles = ("power spectrum of single-unit modes, per layer", "power spectrum of each layer's summed mode")
    for ax, profile, title in zip(axes[:2], profiles, titles):
        for layer, row in profile.iterrows():
            ax.plot(np.asarray(row.index, float), row.values, marker="o", ms=3, label=layer)
        ax.set_yscale("log")
        ax.set_ylim(low, 1.0)
        ax.set_xlim(0, 0.5)
        ax.set_xlabel("spatial frequency (cycles/pixel; Nyquist 0.5)")
        ax.set_ylabel("share of power (log scale)")
        ax.set_title(title, fontsize=10)
        ax.legend(title="layer")
    lesion = dc["cluster_lesion"]
    strip = np.concatenate([lesion["intact"][0, 0], lesion["lesioned"][0, 0], lesion["difference"][0, 0]], axis=1)
    axes[2].imshow(strip, cmap="gray", interpolation="nearest")
    axes[2].set_title(f"cluster {dc['cluster']}: intact | lesioned | difference")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_xlabel("latent 0: three 32 x 32 images side by side")
    second = _save(fig, folder / "dcgan_spectra.png")
    return first, second
