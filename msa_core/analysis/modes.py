"""Shapley modes as data: correlation, clustering, cluster lesions, per-layer summaries, spectra.

A mode ``phi_i`` has the game output's shape (an image per latent for a generator, a vector over
classes for a classifier). Dixit et al. (2025) treat the modes of all units as data points: they
correlate and cluster them, lesion a whole cluster to see what it does, and sum the modes per layer
to compare layers (for the DCGAN: which layer paints which spatial frequencies).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ._common import as_values, call_game, n_players_of

__all__ = [
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
]


def _labels_of(result: Any, n: int) -> list[str]:
    labels = getattr(result, "unit_labels", None)
    return list(labels) if labels else [str(i) for i in range(n)]


def mode_correlation(result: Any) -> np.ndarray:
    """Pearson correlation between units' modes over all output entries: float64 ``(n, n)``.

    A unit whose mode is constant (e.g. a null unit) has correlation 0 with every other unit and 1
    with itself, rather than NaN.
    """
    flat = as_values(result).reshape(as_values(result).shape[0], -1)
    centred = flat - flat.mean(1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    unit = centred / safe[:, None]
    corr = unit @ unit.T
    corr[norms == 0, :] = 0.0
    corr[:, norms == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def _have_scipy() -> bool:
    try:
        import scipy.cluster.hierarchy  # noqa: F401

        return True
    except ImportError:
        return False


def _spectral_labels(similarity: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Normalised spectral clustering (Ng, Jordan & Weiss 2002) with a seeded k-means, numpy only."""
    n = similarity.shape[0]
    affinity = np.clip(similarity, 0.0, None)  # anti-correlated modes are not "similar"
    np.fill_diagonal(affinity, 0.0)
    degree = affinity.sum(1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)), 0.0)
    normalised = inv_sqrt[:, None] * affinity * inv_sqrt[None, :]
    _, vectors = np.linalg.eigh(normalised)
    embedding = vectors[:, -n_clusters:]
    lengths = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.where(lengths > 0, lengths, 1.0)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(10):  # k-means with restarts; deterministic given the seed
        centres = embedding[rng.choice(n, n_clusters, replace=False)]
        for _ in range(100):
            distances = ((embedding[:, None, :] - centres[None]) ** 2).sum(-1)
            labels = distances.argmin(1)
            new = np.stack(
                [embedding[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(n_clusters)]
            )
            if np.allclose(new, centres):
                break
            centres = new
        inertia = float(((embedding - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def cluster_modes(
    result: Any, n_clusters: int, *, method: str = "auto", seed: int = 0
) -> np.ndarray:
    """Cluster units by the correlation of their modes: int64 labels ``(n_players,)`` in ``0..k-1``.

    Args:
        result: a ShapleyResult or values ``(n, *output_shape)``.
        n_clusters: number of clusters ``k`` (``1 <= k <= n``).
        method: "hierarchical" (average linkage on the distance ``1 - correlation``; needs scipy),
            "spectral" (numpy only), or "auto" (hierarchical when scipy is installed).
        seed: seed of the spectral method's k-means.

    Labels are renumbered so that cluster 0 is the largest (ties: the one holding the lowest unit).
    """
    corr = mode_correlation(result)
    n = corr.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be between 1 and {n}; got {n_clusters}")
    if method == "auto":
        method = "hierarchical" if _have_scipy() else "spectral"
    if n_clusters == 1:
        labels = np.zeros(n, dtype=np.int64)
    elif method == "hierarchical":
        if not _have_scipy():
            raise ImportError("method='hierarchical' needs scipy; use method='spectral'")
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        distance = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="average")
        labels = fcluster(tree, n_clusters, criterion="maxclust").astype(np.int64) - 1
    elif method == "spectral":
        labels = _spectral_labels(corr, n_clusters, seed)
    else:
        raise ValueError(f"method must be 'auto', 'hierarchical' or 'spectral'; got {method!r}")
    # canonical numbering: by size (descending), then by the first member
    clusters = sorted(set(labels.tolist()), key=lambda c: (-(labels == c).sum(), np.nonzero(labels == c)[0][0]))
    remap = {c: k for k, c in enumerate(clusters)}
    return np.array([remap[c] for c in labels.tolist()], dtype=np.int64)


def lesion_cluster(
    game: Callable, members: Sequence[int] | np.ndarray, *, n_players: int | None = None, batch_size: int | None = None
) -> dict[str, np.ndarray]:
    """The game with a whole cluster lesioned, next to the intact game (one call of two coalitions).

    Args:
        members: unit indices of the cluster, or a bool mask ``(n_players,)``.

    Returns:
        dict with ``intact`` ``(*output_shape)``, ``lesioned`` (only the cluster lesioned) and
        ``difference`` = ``intact - lesioned`` (what the cluster adds), all float64.
    """
    n = n_players_of(game, n_players)
    members = np.asarray(members)
    mask = members.astype(bool) if members.dtype == bool else np.isin(np.arange(n), members.astype(np.int64))
    if mask.shape != (n,):
        raise ValueError(f"members must be unit indices or a bool mask of length {n}")
    coalitions = torch.ones((2, n), dtype=torch.bool)
    coalitions[1] = torch.from_numpy(~mask)
    values = call_game(game, coalitions, batch_size)
    return {"intact": values[0], "lesioned": values[1], "difference": values[0] - values[1]}


def layer_of(label: str) -> str:
    """The layer part of a unit label ``"<layer>:<index>"`` (the whole label when it has no colon)."""
    return label.rsplit(":", 1)[0] if ":" in label else label


def layer_groups(unit_labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Layer -> int64 unit indices, in order of first appearance (from labels ``"<layer>:<i>"``)."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(unit_labels):
        groups.setdefault(layer_of(str(label)), []).append(index)
    return {layer: np.asarray(indices, dtype=np.int64) for layer, indices in groups.items()}


def layer_modes(result: Any, unit_labels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each layer's summed mode ``sum_{i in layer} phi_i``: layer -> float64 ``(*output_shape)``.

    By efficiency the layer modes add up to ``v(N) - v(empty)``.
    """
    values = as_values(result)
    labels = list(unit_labels) if unit_labels is not None else _labels_of(result, values.shape[0])
    return {layer: values[idx].sum(0) for layer, idx in layer_groups(labels).items()}


def layer_summary(result: Any, unit_labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-layer table when players span several layers.

    Columns: ``n_units``; ``total`` (sum over units and outputs of the modes); ``share`` of the sum
    of all layers' ``|total|``; ``mean_abs`` (mean over units of the mean ``|phi_i|`` over outputs);
    ``max_abs_unit`` (label of the unit with the largest mean ``|phi_i|``); ``mode_norm`` (L2 norm of
    the summed layer mode).
    """
    values = as_values(result)
    n = values.shape[0]
    flat = values.reshape(n, -1)
    labels = list(unit_labels) if unit_labels is not None else _labels_of(result, n)
    rows = []
    for layer, idx in layer_groups(labels).items():
        unit_abs = np.abs(flat[idx]).mean(1)
        rows.append(
            {
                "layer": layer,
                "n_units": len(idx),
                "total": float(flat[idx].sum()),
                "mean_abs": float(unit_abs.mean()),
                "max_abs_unit": labels[int(idx[int(unit_abs.argmax())])],
                "mode_norm": float(np.linalg.norm(flat[idx].sum(0))),
            }
        )
    table = pd.DataFrame(rows).set_index("layer")
    total_abs = table["total"].abs().sum()
    table.insert(2, "share", table["total"].abs() / total_abs if total_abs > 0 else np.nan)
    return table


def radial_power_spectrum(images: Any, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of images ``(..., H, W)``, averaged over leading axes.

    The mean of each image is removed first (so the DC term does not dominate), the 2-D FFT power
    ``|F|^2`` is averaged over rings of equal radial frequency.

    Returns:
        ``(frequencies, power)``: float64 ``(n_bins,)`` each; frequencies in cycles per pixel from 0
        to 0.5 (the Nyquist frequency), ring centres.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim < 2:
        raise ValueError("images must have at least two axes (..., H, W)")
    h, w = images.shape[-2:]
    flat = images.reshape(-1, h, w)
    flat = flat - flat.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(flat)) ** 2).mean(0)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    n_bins = n_bins or min(h, w) // 2
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    which = np.clip(np.digitize(radius, edges) - 1, 0, None)
    inside = radius <= 0.5
    sums = np.bincount(which[inside], weights=power[inside], minlength=n_bins)[:n_bins]
    counts = np.bincount(which[inside], minlength=n_bins)[:n_bins]
    return (edges[:-1] + edges[1:]) / 2, np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def spatial_frequency_profile(
    result: Any,
    unit_labels: Sequence[str] | None = None,
    *,
    n_bins: int | None = None,
    per_unit: bool = True,
    normalise: bool = True,
) -> pd.DataFrame:
    """Radially averaged power spectrum of image modes, per layer.

    Args:
        result: modes ``(n, ..., H, W)`` (e.g. a generator's modes ``(n, n_latents, C, H, W)``).
        unit_labels: layer of each unit via ``"<layer>:<i>"`` labels (default: the result's).
        n_bins: frequency bins (default ``min(H, W) // 2``).
        per_unit: average the spectra of the layer's individual modes (what each unit paints); False
            takes the spectrum of the layer's summed mode (what the layer paints as a whole).
        normalise: divide each layer's profile by its total power, so layers of different strength
            are compared by *where* their power lies.

    Returns:
        DataFrame with one row per layer (index ``layer``) and one column per frequency bin (the
        bin centre in cycles per pixel, as float).
    """
    values = as_values(result)
    labels = list(unit_labels) if unit_labels is not None else _labels_of(result, values.shape[0])
    rows = {}
    freqs = None
    for layer, idx in layer_groups(labels).items():
        if per_unit:
            spectra = [radial_power_spectrum(values[i], n_bins) for i in idx]
            freqs = spectra[0][0]
            profile = np.mean([s[1] for s in spectra], axis=0)
        else:
            freqs, profile = radial_power_spectrum(values[idx].sum(0), n_bins)
        if normalise and profile.sum() > 0:
            profile = profile / profile.sum()
        rows[layer] = profile
    table = pd.DataFrame(rows, index=pd.Index(np.round(freqs, 6), name="frequency")).T
    table.index.name = "layer"
    return table


def spectral_centroid(profile: pd.DataFrame) -> pd.Series:
    """Power-weighted mean frequency (cycles per pixel) of each row of a spatial-frequency profile."""
    freqs = np.asarray(profile.columns, dtype=np.float64)
    weights = profile.to_numpy(dtype=np.float64)
    totals = weights.sum(1)
    return pd.Series(
        np.where(totals > 0, (weights * freqs).sum(1) / np.where(totals > 0, totals, 1.0), np.nan),
        index=profile.index,
        name="centroid",
    )
