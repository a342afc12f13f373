"""Pure-torch helpers for the character-level MoE language model.

Token layout of one word: ``[BOS, c_1, ..., c_n, EOS, PAD, ...]``; its length
is ``n + 2`` (BOS and EOS included, padding excluded).  The vocabulary is a
sequence of strings whose first three entries are the special tokens
``PAD_TOKEN``, ``BOS_TOKEN``, ``EOS_TOKEN`` (ids 0, 1, 2), followed by single
characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<bos>", "<eos>"
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)

__all__ = [
    "PAD_TOKEN", "BOS_TOKEN", "EOS_TOKEN", "PAD_ID", "BOS_ID", "EOS_ID", "SPECIAL_TOKENS",
    "build_vocab", "encode_words", "decode_tokens", "word_log_likelihood", "score_words",
]


def build_vocab(words: Iterable[str]) -> list[str]:
    """Vocabulary: the three special tokens, then every character in ``words`` sorted by code point."""
    chars = sorted({c for w in words for c in w})
    return list(SPECIAL_TOKENS) + chars


def encode_words(words: Sequence[str], vocab: Sequence[str], max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode words as BOS + chars + EOS, right-padded with PAD.

    Returns ``tokens`` (n_words, T) int64 and ``lengths`` (n_words,) int64, where
    ``lengths[i] = len(words[i]) + 2`` and ``T = max_len`` or, if None, the
    largest length.  Raises ValueError for characters not in ``vocab`` or a
    word longer than ``max_len - 2``.
    """
    index = {str(tok): i for i, tok in enumerate(vocab)}
    lengths = [len(w) + 2 for w in words]
    t = max(lengths, default=2) if max_len is None else int(max_len)
    tokens = torch.full((len(words), t), PAD_ID, dtype=torch.int64)
    for i, w in enumerate(words):
        if len(w) + 2 > t:
            raise ValueError(f"word {w!r} needs {len(w) + 2} tokens but max_len is {t}")
        try:
            ids = [index[c] for c in w]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} of word {w!r} is not in the vocabulary") from None
        tokens[i, 0] = BOS_ID
        tokens[i, 1 : len(w) + 1] = torch.tensor(ids, dtype=torch.int64)
        tokens[i, len(w) + 1] = EOS_ID
    return tokens, torch.tensor(lengths, dtype=torch.int64)


def decode_tokens(tokens: torch.Tensor | np.ndarray, vocab: Sequence[str]) -> list[str]:
    """Inverse of ``encode_words``: tokens (n_words, T) -> words (specials dropped, stop at EOS)."""
    words = []
    for row in np.asarray(tokens):
        chars = []
        for tok in row.tolist():
            if tok == EOS_ID:
                break
            if tok >= len(SPECIAL_TOKENS):
                chars.append(str(vocab[tok]))
        words.append("".join(chars))
    return words


def word_log_likelihood(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Total log-likelihood (natural log, SUM over predicted tokens) of each word.

    logits: (n_words, T, V), where logits[:, t] predicts tokens[:, t + 1].
    tokens: (n_words, T) int64. lengths: (n_words,) tokens per word incl. BOS and EOS.
    Returns (n_words,) float: sum over t in [0, length - 2] of
    log p(tokens[t + 1] | tokens[:t + 1]), i.e. every character plus EOS
    (``length - 1`` terms); padding is ignored.  Divide by ``lengths - 1`` for
    the per-token mean.
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = tokens[:, 1:]
    tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (n, T-1)
    steps = torch.arange(target.shape[1], device=tokens.device)
    mask = steps[None, :] < (lengths.to(tokens.device)[:, None] - 1)
    # where() rather than multiply: a -inf log-prob at a padded slot must not leak as NaN.
    return torch.where(mask, tok_lp, torch.zeros_like(tok_lp)).sum(-1)


@torch.no_grad()
def score_words(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Run ``model`` on tokens (n_words, T) in batches; return word_log_likelihood (n_words,) on CPU."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, tokens.shape[0], batch_size):
        tok = tokens[s : s + batch_size].to(device)
        out.append(word_log_likelihood(model(tok), tok, lengths[s : s + batch_size].to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)
