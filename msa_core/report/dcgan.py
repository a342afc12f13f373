"""Section 4: the DCGAN's layer-by-layer modes and the order of pixel generation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..analysis import (
    cluster_modes,
    layer_modes,
    layer_summary,
    lesion_cluster,
    spatial_frequency_profile,
    spectral_centroid,
)
from ..runs import RunSpec
from ..zoo import all_block_paths
from .markdown import md_table, run_tag
from .runs import Budget, FindingsRuns

__all__ = ["dcgan_findings", "dcgan_markdown"]


def dcgan_findings(runs: FindingsRuns, budget: Budget) -> dict[str, Any]:
    """Modes of all channels of the DCGAN's three blocks (game: the generated images of the built-in's
    32 fixed latents): layer summaries, spectra and a cluster lesion."""
    spec = RunSpec("dcgan-digits", units=tuple(all_block_paths("dcgan-digits")), objective="image",
                   n_permutations=budget.dcgan_permutations, seed=budget.seed)
    record = runs.run("dcgan", "dcgan-digits all blocks", spec)
    result = record.result
    per_unit = spatial_frequency_profile(result, per_unit=True)
    summed = spatial_frequency_profile(result, per_unit=False)
    high = np.asarray(per_unit.columns, dtype=float) >= 0.25  # above half Nyquist: detail of 1-4 pixels
    labels = cluster_modes(result, budget.dcgan_clusters, seed=budget.seed)
    values = result.values.numpy()
    norms = [np.linalg.norm(values[labels == c].sum(0)) for c in range(budget.dcgan_clusters)]
    chosen = int(np.argmax(norms))
    lesion = lesion_cluster(runs.game(record), np.nonzero(labels == chosen)[0])
    layers = [label.rsplit(":", 1)[0] for label in result.unit_labels]
    composition = pd.Series([layers[i] for i in np.nonzero(labels == chosen)[0]]).value_counts()
    return {
        "record": record, "result": result, "layer_summary": layer_summary(result), "layer_modes": layer_modes(result),
        "profile_units": per_unit, "profile_summed": summed,
        "centroid_units": spectral_centroid(per_unit), "centroid_summed": spectral_centroid(summed),
        "high_share_units": per_unit.loc[:, high].sum(axis=1), "high_share_summed": summed.loc[:, high].sum(axis=1),
        "clusters": labels, "cluster": chosen, "cluster_composition": composition, "cluster_lesion": lesion,
    }


def dcgan_markdown(dc: dict[str, Any], budget: Budget, figures: tuple[str, str]) -> list[str]:
    """The Markdown of section 4 (lines)."""
    ls, cu = dc["layer_summary"], dc["centroid_units"]
    table = pd.DataFrame({
        "units": ls["n_units"], "share of abs total": ls["share"], "mean abs phi per unit": ls["mean_abs"],
        "summed-mode norm": ls["mode_norm"], "centroid, single modes": cu,
        "high-freq share, single modes": dc["high_share_units"], "centroid, summed mode": dc["centroid_summed"],
        "high-freq share, summed mode": dc["high_share_summed"],
    })
    table.index.name = "layer"
    result = dc["result"]
    n_latents = int(result.values.shape[1])
    order = list(cu.sort_values().index)
    inversions = "; ".join(
        f"{a} (earlier) paints finer detail than {b}"
        for k, a in enumerate(ls.index) for b in list(ls.index)[k + 1:] if cu[a] > cu[b]
    )
    comp = ", ".join(f"{k}: {v}" for k, v in dc["cluster_composition"].items())
    return [
        "## 4. The DCGAN's layer-by-layer modes: the order of pixel generation",
        "",
        f"Run {run_tag(dc['record'])}. Game: the generated 32x32 images for the built-in's {n_latents} fixed latents "
        f"(a {n_latents}x1x32x32 tensor); players: all {result.n_players} channels of the three hidden blocks (net.0 "
        f"at 4x4, net.1 at 8x8, net.2 at 16x16), lesioned to zero; {budget.dcgan_permutations} permutations. For each "
        "layer we take the radially averaged power spectrum of the modes (mean removed, normalised to total 1) and "
        "report its centroid (cycles/pixel; Nyquist = 0.5) and the share of power at >= 0.25 cycles/pixel, both for "
        "single units' modes (what one channel paints) and for the layer's summed mode (what the layer paints).",
        "",
        md_table(table),
        "",
        f"Single-unit modes, from lowest to highest centroid: {' < '.join(f'{l} ({cu[l]:.3f})' for l in order)}. "
        + ("Deeper blocks paint finer detail: a coarse-to-fine hierarchy, following the upsampling. "
           if order == list(ls.index) else
           f"This is not a plain coarse-to-fine order along depth: {inversions}, an inversion of the hierarchy like the "
           "one Dixit et al. report for their DCGAN. ")
        + f"The layer with the largest summed contribution is {ls['share'].idxmax()} ({100 * ls['share'].max():.0f}% "
        "of the summed |total|).",
        "",
        f"Clustering the {result.n_players} modes by correlation ({budget.dcgan_clusters} clusters, average linkage) "
        f"and lesioning the cluster with the largest summed mode (cluster {dc['cluster']}; {comp}) changes the images "
        f"by {float(np.abs(dc['cluster_lesion']['difference']).mean()):.3f} on average per pixel (pixel range -1..1).",
        "",
        f"![DCGAN layer modes]({figures[0]})",
        "",
        f"![DCGAN spectra and a cluster lesion]({figures[1]})",
        "",
    ]
