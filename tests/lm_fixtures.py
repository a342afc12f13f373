"""Tiny randomly initialised Hugging Face decoders of each family, saved with a locally trained byte-level BPE
tokenizer (nothing is downloaded). Used by the language-model tests and bench/prefix_reuse.py."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = (
    "2 + 3 = 5. 7 + 1 = 8. 9 - 4 = 5. 6 * 2 = 12. 3 * 3 = 9. 8 - 5 = 3.",
    "Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.",
    "The quick brown fox jumps over the lazy dog. Das Haus ist gross. La maison est grande.",
    "La casa es grande. Il gatto dorme. Language: English, German, French, Spanish, Italian.",
)
FAMILIES = ("gpt2", "llama", "mistral", "mixtral", "qwen2_moe")


def save_tokenizer(folder: Path, vocab_size: int = 320):
    """Train a byte-level BPE on :data:`CORPUS`, save it in ``folder``; returns the transformers tokenizer."""
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(CORPUS) * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def make_config(family: str, vocab_size: int, n_layers: int = 3, hidden: int = 32):
    """A tiny config of ``family`` (one of :data:`FAMILIES`), float32, eager-free defaults."""
    import transformers

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if family == "gpt2":
        return transformers.GPT2Config(n_layer=n_layers, n_head=4, n_embd=hidden, n_positions=64, **common)
    llama_like = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **common)
    if family == "llama":
        return transformers.LlamaConfig(**llama_like)
    if family == "mistral":
        return transformers.MistralConfig(sliding_window=4, **llama_like)
    if family == "mixtral":
        return transformers.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **llama_like)
    if family == "qwen2_moe":
        return transformers.Qwen2MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=hidden,
                                           shared_expert_intermediate_size=hidden, decoder_sparse_step=1,
                                           **llama_like)
    raise ValueError(family)


def save_model(folder: Path, family: str, *, tokenizer: bool = True, n_layers: int = 3, hidden: int = 32,
               seed: int = 0) -> Path:
    """Build a random ``family`` model (seed ``seed``) and save it (with the BPE tokenizer) in ``folder``."""
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = len(save_tokenizer(folder)) if tokenizer else 320
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(make_config(family, vocab, n_layers, hidden))
    model.save_pretrained(str(folder))
    return folder
