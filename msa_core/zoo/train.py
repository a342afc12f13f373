"""Train the built-in models and write their weights, eval data and scores to ``assets/``.

Usage::

    python -m msa_core.zoo.train NAME [NAME ...]     # NAME in mlp-digits, mlp-digits-l1,
                                                     # mlp-digits-l2, dcgan-digits, moe-lm
    python -m msa_core.zoo.train all

Runs on CPU with 2 threads and fixed seeds; each model takes at most a few
minutes.  ``dcgan-digits`` uses ``mlp-digits`` (if already trained) to score
how digit-like its samples are.  ``moe-lm`` needs Debian's word lists::

    apt-get install -y wamerican wngerman wfrench wspanish witalian

Scores are merged into ``assets/scores.json``, which the tests compare with a
recomputation.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import assets_dir
from .architectures import DCGANDiscriminator, DCGANGenerator, DigitsMLP, MoELM
from .lm import build_vocab, encode_words, score_words

SEED = 0
N_TEST_DIGITS = 500

# Coefficients of the weight penalties (sum over all Linear weights, biases
# excluded), added to the mean cross-entropy of each mini-batch.  1e-4 as in
# the paper: even on 1297 digits it visibly changes the weights (L1: ~50% of
# weights below 1e-2 vs ~3% unregularised, total |w| halved; L2: weight norm
# 16.5 vs 21.2), so no tuning was needed.  With 1e-3, L1 reaches 84% near-zero
# weights at 96.4% test accuracy.
L1_COEF = 1e-4
L2_COEF = 1e-4

WORDLISTS = {  # language -> (Debian package, path)
    "english": ("wamerican", "/usr/share/dict/american-english"),
    "german": ("wngerman", "/usr/share/dict/ngerman"),
    "french": ("wfrench", "/usr/share/dict/french"),
    "spanish": ("wspanish", "/usr/share/dict/spanish"),
    "italian": ("witalian", "/usr/share/dict/italian"),
}
N_TRAIN_WORDS, N_HELDOUT_WORDS = 4000, 300
MIN_WORD, MAX_WORD = 3, 12


N_THREADS = 2  # overridden by --threads


def set_seed(seed: int = SEED) -> None:
    """Seed python, numpy and torch and pin torch to ``N_THREADS`` CPU threads."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(N_THREADS)


def save_model(model: nn.Module, name: str, **extra: str) -> Path:
    """Write ``model``'s state dict to ``assets/NAME.safetensors`` with its config in the metadata."""
    from safetensors.torch import save_file

    path = assets_dir() / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": type(model).__name__, "config": json.dumps(model.config), "name": name, **extra}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    print(f"[{name}] wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return path


def update_scores(name: str, scores: dict) -> None:
    """Merge ``scores`` for model ``name`` into ``assets/scores.json``."""
    path = assets_dir() / "scores.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = scores
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- digits


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed stratified split of sklearn's digits: x_train (1297, 64), y_train, x_test (500, 64), y_test.

    Pixels scaled from 0..16 to [0, 1] float32; labels int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=N_TEST_DIGITS, stratify=y, random_state=SEED)
    return x_tr, y_tr, x_te, y_te


def train_mlp(name: str) -> dict:
    """Train one of the three digit MLPs (same split, init and schedule; only the penalty differs)."""
    penalty = {"mlp-digits": ("none", 0.0), "mlp-digits-l1": ("l1", L1_COEF), "mlp-digits-l2": ("l2", L2_COEF)}[name]
    set_seed()
    x_tr, y_tr, x_te, y_te = digits_split()
    np.savez_compressed(assets_dir() / "digits_eval.npz", x=x_te, y=y_te, images=x_te.reshape(-1, 8, 8))
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    xe, ye = torch.from_numpy(x_te), torch.from_numpy(y_te)

    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    epochs, batch = 150, 64
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), batch):
            idx = perm[s : s + batch]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            if penalty[0] == "l1":
                loss = loss + penalty[1] * sum(w.abs().sum() for w in weights)
            elif penalty[0] == "l2":
                loss = loss + penalty[1] * sum(w.pow(2).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 25 == 0 or epoch == epochs:
            model.eval()
            with torch.no_grad():
                acc = (model(xe).argmax(1) == ye).float().mean().item()
            print(f"[{name}] epoch {epoch:3d} loss {loss.item():.4f} test acc {acc:.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        train_acc = (model(xt).argmax(1) == yt).float().mean().item()
        test_acc = (model(xe).argmax(1) == ye).float().mean().item()
        w_all = torch.cat([w.flatten() for w in weights])
    scores = {
        "test_accuracy": round(test_acc, 4),
        "train_accuracy": round(train_acc, 4),
        "n_test": int(len(ye)),
        "penalty": penalty[0],
        "penalty_coef": penalty[1],
        "epochs": epochs,
        "weight_l1": round(w_all.abs().sum().item(), 2),
        "weight_l2": round(w_all.pow(2).sum().sqrt().item(), 3),
        "frac_weights_below_1e-2": round((w_all.abs() < 1e-2).float().mean().item(), 4),
    }
    save_model(model, name, penalty=penalty[0], penalty_coef=str(penalty[1]))
    update_scores(name, scores)
    print(f"[{name}] FINAL test accuracy {test_acc:.4f} (train {train_acc:.4f}); {scores}")
    return scores


# --------------------------------------------------------------------------- DCGAN


def digits_32(x: np.ndarray) -> torch.Tensor:
    """x (N, 64) in [0, 1] -> (N, 1, 32, 32) in [-1, 1], bilinear upscaling."""
    img = torch.from_numpy(x).view(-1, 1, 8, 8)
    img = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)
    return (img * 2 - 1).clamp(-1, 1)


def to_digits_8(img: torch.Tensor) -> torch.Tensor:
    """(N, 1, 32, 32) in [-1, 1] -> (N, 64) in [0, 1] (4x4 average pooling), the MLP's input space."""
    return ((F.avg_pool2d(img, 4) + 1) / 2).flatten(1)


def save_grid(images: torch.Tensor, path: Path, ncol: int = 8, scale: int = 3) -> None:
    """Save (N, 1, H, W) images in [-1, 1] as a grayscale PNG grid (needs Pillow; skipped without it)."""
    try:
        from PIL import Image
    except ImportError:
        print("Pillow not installed; no preview written")
        return
    n, _, h, w = images.shape
    nrow = math.ceil(n / ncol)
    pad = 2
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, np.uint8)
    arr = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    for i in range(n):
        r, c = divmod(i, ncol)
        # Digits are stored as ink-high; invert so the preview reads like ink on paper.
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = 255 - arr[i]
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)
    print(f"wrote {path}")


def digit_likeness(images: torch.Tensor) -> dict | None:
    """Score generated (N, 1, 32, 32) images with the trained mlp-digits classifier, if available.

    Returns mean max-softmax confidence, inception-style score exp(E KL(p(y|x) || p(y)))
    (10 = confident and class-balanced) and the predicted class histogram.
    """
    from . import load_builtin

    try:
        clf, _ = load_builtin("mlp-digits")
    except (FileNotFoundError, KeyError):
        return None
    with torch.no_grad():
        p = torch.softmax(clf(to_digits_8(images)), dim=1)
    py = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - py.clamp_min(1e-12).log())).sum(1).mean()
    return {
        "mean_confidence": round(p.max(1).values.mean().item(), 4),
        "inception_score": round(kl.exp().item(), 3),
        "class_histogram": torch.bincount(p.argmax(1), minlength=10).tolist(),
    }


def train_dcgan(name: str = "dcgan-digits") -> dict:
    """Train generator + discriminator on the 1297 training digits at 32x32; save the generator only."""
    set_seed()
    nz = 16
    x_tr, _, x_te, _ = digits_split()
    real = digits_32(x_tr)
    g, d = DCGANGenerator(nz=nz), DCGANDiscriminator()

    def init(m: nn.Module) -> None:
        # DCGAN paper init: N(0, 0.02) convs, N(1, 0.02) BN scales.
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(SEED)
    z_eval = torch.randn(32, nz, generator=torch.Generator().manual_seed(1234))
    np.savez_compressed(assets_dir() / "dcgan_digits_eval.npz", z=z_eval.numpy().astype(np.float32))

    z_monitor = torch.randn(256, nz, generator=torch.Generator().manual_seed(7))
    epochs, batch = DCGAN_EPOCHS, 64
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        g.train()
        d.train()
        perm = torch.randperm(len(real), generator=gen)
        for s in range(0, len(real) - batch + 1, batch):  # drop last: BN on tiny batches is noisy
            xb = real[perm[s : s + batch]]
            z = torch.randn(batch, nz, generator=gen)
            fake = g(z)
            # One-sided label smoothing (0.9) keeps D from overpowering G on this tiny dataset.
            ld = F.binary_cross_entropy_with_logits(d(xb), torch.full((batch,), 0.9)) + \
                F.binary_cross_entropy_with_logits(d(fake.detach()), torch.zeros(batch))
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            lg = F.binary_cross_entropy_with_logits(d(fake), torch.ones(batch))
            opt_g.zero_grad()
            lg.backward()
            opt_g.step()
        if epoch % 20 == 0 or epoch == epochs:
            g.eval()
            with torch.no_grad():
                s = digit_likeness(g(z_monitor))
            print(f"[{name}] epoch {epoch:3d} loss D {ld.item():.3f} G {lg.item():.3f} "
                  f"({time.time() - t0:.0f}s) {s}", flush=True)

    g.eval()
    with torch.no_grad():
        samples = g(torch.randn(1000, nz, generator=torch.Generator().manual_seed(99)))
        preview = g(z_eval)
    scores = {"epochs": epochs, "nz": nz, "n_params": sum(p.numel() for p in g.parameters())}
    gen_score = digit_likeness(samples)
    if gen_score is not None:
        scores["generated_1000"] = gen_score
        scores["real_test_500"] = digit_likeness(digits_32(x_te))
    save_model(g, name)
    save_grid(preview, assets_dir() / "dcgan_digits_preview.png")
    update_scores(name, scores)
    print(f"[{name}] FINAL {scores}")
    return scores


DCGAN_EPOCHS = 150


# --------------------------------------------------------------------------- MoE LM


def load_wordlists() -> dict[str, list[str]]:
    """Filtered, sorted, de-duplicated words per language.

    Keeps lowercase alphabetic words (accents allowed) of length 3..12 and
    drops words that occur in more than one language's list, so every word
    has one language label.
    """
    words = {}
    for lang, (pkg, path) in WORDLISTS.items():
        p = Path(path)
        if not p.exists():
            sys.exit(f"missing {path}: apt-get install -y {pkg}")
        ws = {w.strip() for w in p.read_text(encoding="utf-8").splitlines()}
        words[lang] = {w for w in ws if w.isalpha() and w == w.lower() and MIN_WORD <= len(w) <= MAX_WORD}
    counts: dict[str, int] = {}
    for ws in words.values():
        for w in ws:
            counts[w] = counts.get(w, 0) + 1
    return {lang: sorted(w for w in ws if counts[w] == 1) for lang, ws in words.items()}


def train_moe_lm(name: str = "moe-lm") -> dict:
    """Train the character MoE LM on a balanced sample of words of five languages."""
    set_seed()
    lists = load_wordlists()
    languages = list(lists)
    vocab = build_vocab(w for ws in lists.values() for w in ws)
    rng = np.random.default_rng(SEED)
    train_w, train_l, held_w, held_l = [], [], [], []
    for li, lang in enumerate(languages):
        ws = lists[lang]
        pick = rng.permutation(len(ws))[: N_TRAIN_WORDS + N_HELDOUT_WORDS]
        chosen = [ws[i] for i in pick]
        train_w += chosen[:N_TRAIN_WORDS]
        train_l += [li] * N_TRAIN_WORDS
        held_w += chosen[N_TRAIN_WORDS:]
        held_l += [li] * N_HELDOUT_WORDS
        print(f"[{name}] {lang}: {len(ws)} candidate words, e.g. {chosen[:6]}")
    max_len = MAX_WORD + 2
    tr_tok, tr_len = encode_words(train_w, vocab, max_len)
    he_tok, he_len = encode_words(held_w, vocab, max_len)
    tr_lang, he_lang = torch.tensor(train_l), torch.tensor(held_l)
    width = max(len(w) for w in held_w)
    np.savez_compressed(
        assets_dir() / "moe_lm_eval.npz",
        tokens=he_tok.numpy(), lengths=he_len.numpy(), language=he_lang.numpy(),
        languages=np.array(languages, dtype=f"<U{max(map(len, languages))}"),
        vocab=np.array(vocab, dtype=f"<U{max(map(len, vocab))}"),
        words=np.array(held_w, dtype=f"<U{width}"),
    )
    print(f"[{name}] vocab ({len(vocab)}): {''.join(vocab[3:])}; {len(train_w)} train / {len(held_w)} held-out words")

    model = MoELM(vocab_size=len(vocab), max_len=max_len)
    epochs, batch, aux_coef = MOE_EPOCHS, 128, 0.01
    steps = epochs * math.ceil(len(tr_tok) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(tr_tok), generator=gen)
        tot, n = 0.0, 0
        for s in range(0, len(tr_tok), batch):
            idx = perm[s : s + batch]
            tok = tr_tok[idx]
            logits = model(tok)
            # Trim to the longest word in the batch would save time, but keeping
            # T fixed keeps the code simple; PAD targets are ignored.
            target = tok[:, 1:].clone()
            target[target == 0] = -100
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
            loss = ce + aux_coef * model.aux_loss()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += ce.item() * len(idx)
            n += len(idx)
        model.eval()
        ll = score_words(model, he_tok, he_len)
        per_tok = (ll.sum() / (he_len - 1).sum()).item()
        print(f"[{name}] epoch {epoch:2d} train CE/token {tot / n:.4f} held-out LL/token {per_tok:.4f} "
              f"({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    scores = evaluate_lm(model, he_tok, he_len, he_lang, languages, tr_tok, tr_lang)
    scores["epochs"] = epochs
    save_model(model, name)
    update_scores(name, scores)
    print(f"[{name}] FINAL " + json.dumps(scores, indent=1))
    return scores


MOE_EPOCHS = 12


@torch.no_grad()
def routing_profile(model: MoELM, tokens: torch.Tensor, lengths: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Mean gate weight per (layer, expert) over each word's real positions: (n_words, n_layers * n_experts)."""
    rows = []
    for s in range(0, tokens.shape[0], batch_size):
        tok, ln = tokens[s : s + batch_size], lengths[s : s + batch_size]
        model(tok)
        mask = (torch.arange(tok.shape[1])[None, :] < ln[:, None]).float()  # (n, T)
        feats = []
        for block in model.blocks:
            g = block.moe.last_gates  # (n, T, E)
            feats.append((g * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        rows.append(torch.cat(feats, dim=1))
    return torch.cat(rows)


@torch.no_grad()
def evaluate_lm(model: MoELM, he_tok, he_len, he_lang, languages, tr_tok, tr_lang) -> dict:
    """Per-language held-out log-likelihoods, expert usage and a routing-based language-ID accuracy."""
    ll = score_words(model, he_tok, he_len)
    per_lang = {}
    for li, lang in enumerate(languages):
        m = he_lang == li
        per_lang[lang] = {
            "mean_loglik_per_word": round(ll[m].mean().item(), 4),
            "mean_loglik_per_token": round((ll[m].sum() / (he_len[m] - 1).sum()).item(), 4),
        }
    tr_len = (tr_tok != 0).sum(1)
    f_tr = routing_profile(model, tr_tok, tr_len)
    f_he = routing_profile(model, he_tok, he_len)
    for li, lang in enumerate(languages):
        per_lang[lang]["expert_usage"] = [round(v, 3) for v in f_he[he_lang == li].mean(0).tolist()]
    # Language ID from routing alone: nearest centroid (train words) of the
    # per-word mean gate vector; chance is 1 / n_languages.
    cent = torch.stack([f_tr[tr_lang == li].mean(0) for li in range(len(languages))])
    pred = torch.cdist(f_he, cent).argmin(1)
    # Single-expert lesions (router logit -> -inf, the same mechanism MSA uses):
    # change of mean held-out log-likelihood per word, per language.
    lesion = {}
    modules = dict(model.named_modules())
    for path in model.router_paths():
        rows = []
        for e in range(model.config["n_experts"]):
            def kill(mod, inp, out, e=e):
                out = out.clone()
                out[..., e] = float("-inf")
                return out

            hook = modules[path].register_forward_hook(kill)
            try:
                ll_les = score_words(model, he_tok, he_len)
            finally:
                hook.remove()
            rows.append([round((ll_les - ll)[he_lang == li].mean().item(), 3) for li in range(len(languages))])
        lesion[path] = rows
    return {
        "single_expert_lesion_delta_loglik_per_word": lesion,
        "single_expert_lesion_layout": "router path -> [expert][language] (languages in eval-npz order)",
        "heldout_mean_loglik_per_word": round(ll.mean().item(), 4),
        "heldout_mean_loglik_per_token": round((ll.sum() / (he_len - 1).sum()).item(), 4),
        "per_language": per_lang,
        "routing_language_id_accuracy": round((pred == he_lang).float().mean().item(), 4),
        "expert_usage_layout": "per layer, per expert mean gate weight (layer-major)",
        "n_heldout_per_language": N_HELDOUT_WORDS,
        "n_train_per_language": N_TRAIN_WORDS,
    }


# --------------------------------------------------------------------------- CLI

TRAINERS = {
    "mlp-digits": train_mlp,
    "mlp-digits-l1": train_mlp,
    "mlp-digits-l2": train_mlp,
    "dcgan-digits": train_dcgan,
    "moe-lm": train_moe_lm,
}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: train the named models (``all`` = every model, MLPs first)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", choices=[*TRAINERS, "all"])
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (default 2; use 1 if other jobs share the CPU: "
                             "oversubscribed OpenMP threads make small convs ~10x slower)")
    args = parser.parse_args(argv)
    global N_THREADS
    N_THREADS = args.threads
    names = list(TRAINERS) if "all" in args.names else list(dict.fromkeys(args.names))
    assets_dir().mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.time()
        TRAINERS[name](name)
        print(f"[{name}] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
