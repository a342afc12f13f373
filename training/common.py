"""Shared helpers of the training scripts: seeding, writing weights and merging scores."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msa_core.zoo import assets_dir

SEED = 0
N_THREADS = 2  # overridden by ``--threads``


def set_seed(seed: int = SEED) -> None:
    """Seed python, numpy and torch and pin torch to ``N_THREADS`` CPU threads."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(N_THREADS)


def save_model(model: nn.Module, name: str, folder: Path | None = None, **extra: str) -> Path:
    """Write ``model``'s state dict to ``<folder or assets>/NAME.safetensors`` with its config in the metadata."""
    from safetensors.torch import save_file

    path = (folder or assets_dir()) / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": type(model).__name__, "config": json.dumps(model.config), "name": name, **extra}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    print(f"[{name}] wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return path


def update_scores(name: str, scores: dict, path: Path | None = None) -> None:
    """Merge ``scores`` for model ``name`` into ``assets/scores.json`` (or ``path``)."""
    path = path or assets_dir() / "scores.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = scores
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def weight_penalty(weights: list[torch.Tensor], kind: str, coef: float) -> torch.Tensor | float:
    """``coef * sum |w|`` (``"l1"``), ``coef * sum w^2`` (``"l2"``) or 0 (``"none"``) over the weight matrices.

    Added to the MEAN cross-entropy of a mini-batch, so the penalty's weight against the data term does
    not depend on the batch size or the training-set size (each step trades the same fraction of
    per-example loss against weight size; a sum-over-examples loss would make 1e-4 ~60,000x weaker).
    """
    if kind == "l1":
        return coef * sum(w.abs().sum() for w in weights)
    if kind == "l2":
        return coef * sum(w.pow(2).sum() for w in weights)
    return 0.0


def weight_stats(weights: list[torch.Tensor]) -> dict:
    """Sum |w|, L2 norm and the fraction of weights with |w| < 1e-2 (for the model cards)."""
    w_all = torch.cat([w.detach().flatten() for w in weights])
    return {
        "weight_l1": round(w_all.abs().sum().item(), 2),
        "weight_l2": round(w_all.pow(2).sum().sqrt().item(), 3),
        "frac_weights_below_1e-2": round((w_all.abs() < 1e-2).float().mean().item(), 4),
    }
