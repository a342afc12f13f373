"""Fashion-MNIST MLPs (784-N-10, LeakyReLU): the three built-ins at N = 200 and the width sweep.

::

    python -m training mlp-fashion mlp-fashion-l1 mlp-fashion-l2   # built-ins -> assets/
    python -m training sweep                                       # N in SWEEP_WIDTHS -> assets/sweep/

Data: Debian's ``dataset-fashion-mnist`` (the four idx files under ``/usr/share/datasets/fashion-mnist/``;
installed with ``apt-get install -y dataset-fashion-mnist`` when missing and we are root). The app and the
tests never read them: they use the committed ``assets/fashion_eval.npz`` (1,024 held-out test images).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msa_core.zoo import FASHION_CLASSES, assets_dir, sweep_dir
from msa_core.zoo.architectures import DigitsMLP

from .common import SEED, save_model, set_seed, update_scores, weight_penalty, weight_stats

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
N_EVAL = 1024  # held-out images committed (the paper's evaluation size)
EPOCHS, BATCH, LR = 12, 256, 1e-3
PENALTIES = {"none": 0.0, "l1": 1e-4, "l2": 1e-4}  # the paper's coefficients
SWEEP_WIDTHS = (5, 10, 25, 50, 100, 200)
BUILTIN_NAMES = {"none": "mlp-fashion", "l1": "mlp-fashion-l1", "l2": "mlp-fashion-l2"}


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped idx file (big-endian header: magic, dims) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_data() -> Path:
    """The folder of the four idx files; installs the Debian package when absent and possible."""
    if not (DATA_DIR / "train-images-idx3-ubyte.gz").exists():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["apt-get", "install", "-y", "dataset-fashion-mnist"], check=False)
        if not (DATA_DIR / "train-images-idx3-ubyte.gz").exists():
            sys.exit(f"Fashion-MNIST not found under {DATA_DIR}: apt-get install -y dataset-fashion-mnist")
    return DATA_DIR


def load_fashion() -> dict[str, np.ndarray]:
    """``train_images`` uint8 (60000, 28, 28), ``train_labels`` (60000,), ``test_images`` (10000, 28, 28), ``test_labels``."""
    root = find_data()
    return {
        "train_images": _read_idx(root / "train-images-idx3-ubyte.gz"),
        "train_labels": _read_idx(root / "train-labels-idx1-ubyte.gz"),
        "test_images": _read_idx(root / "t10k-images-idx3-ubyte.gz"),
        "test_labels": _read_idx(root / "t10k-labels-idx1-ubyte.gz"),
    }


def eval_indices(n_test: int) -> np.ndarray:
    """The fixed 1,024 held-out test images: a seeded draw (``default_rng(0)``) from the 10,000, sorted."""
    return np.sort(np.random.default_rng(SEED).permutation(n_test)[:N_EVAL])


def write_eval_set(data: dict[str, np.ndarray]) -> Path:
    """``assets/fashion_eval.npz``: ``images`` uint8 (1024, 28, 28), ``y`` uint8 (1024,), ``classes`` <U11 (10,)."""
    idx = eval_indices(len(data["test_labels"]))
    path = assets_dir() / "fashion_eval.npz"
    np.savez_compressed(path, images=data["test_images"][idx], y=data["test_labels"][idx],
                        classes=np.array(FASHION_CLASSES))
    return path


def _x(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def train_fashion_mlp(penalty: str, n_hidden: int = 200, data: dict | None = None) -> tuple[DigitsMLP, dict]:
    """Train one 784-N-10 MLP with the given penalty; same seed, init order and batches for every penalty.

    Adam (lr 1e-3), batch 256, 12 epochs on the 60,000 training images, loss = mean batch cross-entropy
    + ``weight_penalty`` (coefficients in ``PENALTIES``). Returns the model (eval mode) and its scores.
    """
    data = data or load_fashion()
    set_seed()
    xt, yt = _x(data["train_images"]), torch.from_numpy(data["train_labels"].astype(np.int64))
    xe, ye = _x(data["test_images"]), torch.from_numpy(data["test_labels"].astype(np.int64))
    model = DigitsMLP(n_inputs=784, n_hidden=n_hidden, n_classes=10)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    coef = PENALTIES[penalty]
    t0 = time.time()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), BATCH):
            idx = perm[s : s + BATCH]
            loss = F.cross_entropy(model(xt[idx]), yt[idx]) + weight_penalty(weights, penalty, coef)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred_test = model(xe).argmax(1)
        train_acc = (model(xt).argmax(1) == yt).float().mean().item()
    held = torch.from_numpy(eval_indices(len(ye)))
    scores = {
        "test_accuracy": round((pred_test[held] == ye[held]).float().mean().item(), 4),
        "n_test": N_EVAL,
        "test_accuracy_10k": round((pred_test == ye).float().mean().item(), 4),
        "train_accuracy": round(train_acc, 4),
        "penalty": penalty,
        "penalty_coef": coef,
        "n_hidden": n_hidden,
        "epochs": EPOCHS,
        "train_seconds": round(time.time() - t0, 1),
        **weight_stats(weights),
    }
    print(f"[fashion {penalty} N={n_hidden}] {scores}", flush=True)
    return model, scores


def train_builtin(name: str) -> dict:
    """Train ``mlp-fashion``, ``mlp-fashion-l1`` or ``mlp-fashion-l2`` into ``assets/`` (weights, eval set, scores)."""
    penalty = {v: k for k, v in BUILTIN_NAMES.items()}[name]
    data = load_fashion()
    write_eval_set(data)
    model, scores = train_fashion_mlp(penalty, 200, data)
    save_model(model, name, penalty=penalty, penalty_coef=str(PENALTIES[penalty]))
    update_scores(name, scores)
    return scores


def train_sweep(_: str = "sweep", widths: tuple[int, ...] = SWEEP_WIDTHS) -> dict:
    """Train every (penalty, N) of the width sweep into ``assets/sweep/`` (ignored by git).

    N = 200 is skipped: it is the same recipe and seed as the built-ins, which stand for it
    (``msa_core.zoo.sweep.sweep_ref(penalty, 200)`` names the built-in).
    """
    data = load_fashion()
    folder = sweep_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n_hidden in (w for w in widths if w != 200):
        for penalty in PENALTIES:
            name = f"{BUILTIN_NAMES[penalty]}-n{n_hidden}"
            if (folder / f"{name}.safetensors").exists():
                print(f"[{name}] exists, kept")
                continue
            model, scores = train_fashion_mlp(penalty, n_hidden, data)
            save_model(model, name, folder, penalty=penalty, penalty_coef=str(PENALTIES[penalty]))
            update_scores(name, scores, folder / "scores.json")
            out[name] = scores
    return out
