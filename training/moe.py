"""The character-level MoE language model (``python -m training moe-lm``).

Needs Debian's word lists::

    apt-get install -y wamerican wngerman wfrench wspanish witalian
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msa_core.zoo import assets_dir
from msa_core.zoo.architectures import MoELM
from msa_core.zoo.lm import build_vocab, encode_words, score_words

from .common import SEED, save_model, set_seed, update_scores

WORDLISTS = {  # language -> (Debian package, path)
    "english": ("wamerican", "/usr/share/dict/american-english"),
    "german": ("wngerman", "/usr/share/dict/ngerman"),
    "french": ("wfrench", "/usr/share/dict/french"),
    "spanish": ("wspanish", "/usr/share/dict/spanish"),
    "italian": ("witalian", "/usr/share/dict/italian"),
}
N_TRAIN_WORDS, N_HELDOUT_WORDS = 4000, 300
MIN_WORD, MAX_WORD = 3, 12


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
