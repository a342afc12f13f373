"""Prefix reuse against the full forward pass on a 12-layer GPT-2-shaped model (random weights).

Players: the heads of layer 10 (of 0..11), so with prefix reuse each batch of coalitions runs only layers
10 and 11 and the head; the full pass runs all 12 layers. Game: the paper-shaped task battery
(``assets/tasks/paper-battery.yaml``, 49 prompts of different lengths, padded) tokenised by a byte-level BPE
trained here on the battery's own text. Both games estimate the same Shapley modes with the same join orders
(alternating, ``--repeats`` times each, in this process; the best time of each is kept, since other
processes on a shared machine only ever add time); the script prints both wall times, their ratio (expect
about 12 / 2) and the largest difference between the modes.

Run: ``python -m bench.prefix_reuse [--hidden 256] [--permutations 8] [--repeats 2] [--threads 2]``.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BATTERY = ROOT / "assets" / "tasks" / "paper-battery.yaml"


def build(folder: Path, hidden: int, n_heads: int) -> Path:
    """Save a 12-layer GPT-2 (``hidden`` wide, ``n_heads`` heads, seed 0) and a BPE tokenizer in ``folder``."""
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    from msa_core.tasks import load_battery

    battery = load_battery(str(BATTERY))
    text = [item.prompt + item.answer for task in battery.tasks for item in task.items]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(text * 4, vocab_size=512, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                                     pad_token="<|endoftext|>")
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=12, n_head=n_heads, n_embd=hidden, n_positions=128,
                                     vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--permutations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from msa_core import shapley_modes
    from msa_core.models import load_subject

    with tempfile.TemporaryDirectory() as folder:
        subject = load_subject(str(build(Path(folder), args.hidden, args.heads)), tasks=str(BATTERY),
                               device=args.device)
        units = "transformer.h.10.attn.heads"
        games = {"full forward": subject.game(units=units, prefix_reuse=False),
                 "prefix reuse": subject.game(units=units)}
        print(f"model: GPT-2, 12 layers, hidden {args.hidden}, {args.heads} heads, vocab {len(subject.tokenizer)}; "
              f"battery: {subject.battery.n_items} items x {len(subject.battery.tasks)} tasks, "
              f"T = {subject.objective().encoded.input_ids.shape[1]}; players: {units} "
              f"({games['full forward'].n_players}); {args.permutations} permutations; "
              f"{args.threads} threads on {args.device}")
        results, times = {}, {name: float("inf") for name in games}
        for name, game in games.items():
            game(torch.ones((2, game.n_players), dtype=torch.bool))  # warm-up
        for _ in range(args.repeats):
            for name, game in games.items():
                start = time.perf_counter()
                results[name] = shapley_modes(game, game.n_players, n_permutations=args.permutations, seed=0)
                times[name] = min(times[name], time.perf_counter() - start)
        for name, game in games.items():
            print(f"{name:>13}: {times[name]:7.2f} s  (best of {args.repeats}; path {game.path})")
        gap = float((results["full forward"].values - results["prefix reuse"].values).abs().max())
        print(f"ratio full / prefix: {times['full forward'] / times['prefix reuse']:.2f}x; "
              f"largest difference between the modes: {gap:.2e}")


if __name__ == "__main__":
    main()
