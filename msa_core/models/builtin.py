"""Subjects for the built-in zoo models (``msa_core.zoo``): sensible games, units and samples for each."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..lesion import UnitSpec
from ..objectives import Objective, class_probability, per_class_accuracy
from .lm_objectives import NextTokenLogProb, PerGroupScore
from .subject import (
    ModelLoadError,
    Subject,
    batch_is_static,
    catalogue,
    fingerprint,
    move_inputs,
    run_once,
)


__all__ = ["list_builtins", "load_builtin_subject", "MeanOutput", "WORDS_PER_LANGUAGE"]

WORDS_PER_LANGUAGE = 32
"""Held-out words per language in the moe-lm subject's inputs (keeps one forward pass to a few ms)."""


def list_builtins() -> list[tuple[str, str]]:
    """``[(name, one-line description), ...]`` of the built-in models, in registry order."""
    from ..zoo import BUILTINS

    return [(name, spec.description) for name, spec in BUILTINS.items()]


class MeanOutput(Objective):
    """Mean of the model output over the inputs: ``(c, n_inputs, *out)`` -> ``(c, *out)``. Additive."""

    name = "mean image"
    additive = True
    output_kind = "image"

    def __init__(self, n_inputs: int) -> None:
        self.n_inputs = n_inputs

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        return outputs.to(torch.float64).sum(1) / self.n_inputs

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n_inputs": self.n_inputs}


def load_builtin_subject(name: str, *, inputs: Any = None, labels: torch.Tensor | None = None, device: str = "cpu") -> Subject:
    """The subject of built-in model ``name`` (see :data:`msa_core.zoo.BUILTINS`).

    ``inputs`` (already tensors) replace the default evaluation inputs; games that need the default data
    (labels, words) are then left out unless ``labels`` are given.
    """
    from ..zoo import BUILTINS, load_builtin

    if name not in BUILTINS:
        raise ModelLoadError(f"unknown built-in model {name!r}; valid names: {', '.join(BUILTINS)}")
    try:
        model, data = load_builtin(name, device=device)
    except (FileNotFoundError, OSError) as error:
        raise ModelLoadError(
            f"the weights or data of built-in model {name!r} are missing ({error}); "
            f"rebuild them with `python -m training {name}` (from the repository root) or set MSA_ASSETS to the assets folder"
        ) from None
    spec = BUILTINS[name]
    if spec.task == "classifier":
        subject = _classifier(name, model, data, inputs, labels)
    elif spec.task == "generator":
        subject = _generator(name, model, data, inputs)
    else:
        subject = _language_model(name, model, data, inputs)
    subject.description = spec.description
    subject.inputs = move_inputs(subject.inputs, device)
    if inputs is not None:
        run_once(model, subject.inputs, f"built-in model {name!r}")
    subject.layers = catalogue(model, subject.inputs, name)
    subject.fingerprint = fingerprint(model, subject.inputs)
    subject.device = device
    if inputs is not None and batch_is_static(model, subject.inputs):
        subject.default_batch_size = 1
    return subject


def _classifier(name: str, model, data: dict[str, np.ndarray], inputs: Any, labels: torch.Tensor | None) -> Subject:
    # Fashion-MNIST's eval set stores its class names; the digits are their own names.
    class_names = [str(c) for c in data["classes"]] if "classes" in data else [str(c) for c in range(10)]
    if inputs is None:
        x = torch.from_numpy(data["x"]).float()
        labels = torch.from_numpy(data["y"]).long()
    else:
        x = inputs
    n = int(x.shape[0])
    objectives: dict[str, Any] = {}
    if labels is not None:
        objectives["per-class accuracy"] = lambda **_: per_class_accuracy(labels, 10, class_names)
    objectives["class probability"] = lambda **_: class_probability(n, class_names)
    objectives["output"] = lambda **_: None
    samples: dict[str, Any] = {}
    if inputs is None:
        samples = {"images": data["images"][:16], "labels": data["y"][:16]}
    return Subject(
        ref=name, name=name, model=model, inputs=x, objectives=objectives,
        default_objective=next(iter(objectives)), layers=[], default_units=["1"],
        unit_presets={"hidden layer": ["1"]}, output_kind="classes", samples=samples,
    )


def _generator(name: str, model, data: dict[str, np.ndarray], inputs: Any) -> Subject:
    from ..zoo import all_block_paths

    z = torch.from_numpy(data["z"]).float() if inputs is None else inputs
    n = int(z.shape[0])
    with torch.no_grad():
        images = model(z[:16].to(next(model.parameters()).device)).cpu().numpy()[:, 0]
    blocks = all_block_paths(name)
    presets: dict[str, list[Any]] = {"one block": ["net.1"], "all blocks": list(blocks)}
    for index, path in enumerate(blocks):
        presets[f"block {index}"] = [path]
    return Subject(
        ref=name, name=name, model=model, inputs=z,
        objectives={"image": lambda **_: None, "mean image": lambda **_: MeanOutput(n)},
        default_objective="image", layers=[], default_units=["net.1"], unit_presets=presets,
        output_kind="image", samples={"images": images},
    )


def _subset(language: np.ndarray, n_languages: int, per_language: int) -> np.ndarray:
    """Indices of the first ``per_language`` held-out words of each language (deterministic, sorted)."""
    picks = [np.flatnonzero(language == li)[:per_language] for li in range(n_languages)]
    return np.sort(np.concatenate(picks))


def _language_model(name: str, model, data: dict[str, np.ndarray], inputs: Any) -> Subject:
    from ..zoo.lm import EOS_TOKEN, encode_words

    vocab = [str(v) for v in data["vocab"]]
    languages = [str(v) for v in data["languages"]]
    routers = model.router_paths()
    expert = {path: UnitSpec(path, kind="expert", lesion="skip") for path in routers}
    index = _subset(data["language"], len(languages), WORDS_PER_LANGUAGE)
    words = [str(w) for w in data["words"][index]]
    objectives: dict[str, Any] = {}
    if inputs is None:
        tokens = torch.from_numpy(data["tokens"][index]).long()
        lengths = torch.from_numpy(data["lengths"][index]).long()
        language = torch.from_numpy(data["language"][index]).long()
        objectives["per-language score"] = lambda **_: PerGroupScore(tokens, lengths, language, languages)
    else:
        tokens = inputs
    default_word = words[0]
    max_len = model.pos_emb.num_embeddings

    def token_game(word: str = default_word, **_: Any) -> NextTokenLogProb:
        """Per-token game on one word: log p of each of its characters and of EOS, shape ``(len(word) + 1,)``."""
        if len(word) + 2 > max_len:
            raise ValueError(f"word {word!r} is too long: at most {max_len - 2} characters")
        ids, _ = encode_words([word], vocab)
        device = next(model.parameters()).device
        return NextTokenLogProb(ids, labels=list(word) + [EOS_TOKEN], inputs=ids.to(device))

    objectives["token log-prob"] = token_game

    def text_game(text: str = default_word, **_: Any) -> NextTokenLogProb:
        """log p of each character of ``text`` and of EOS (labels ``"position:token"``); see msa_core.tasks."""
        from ..tasks import CharCodec, text_objective

        if not text or len(text) + 2 > max_len:
            raise ValueError(f"give a text of 1 to {max_len - 2} characters, e.g. objective='text:hello'")
        return text_objective(CharCodec(vocab), text, device=next(model.parameters()).device)

    objectives["text"] = text_game
    return Subject(
        ref=name, name=name, model=model, inputs=tokens, objectives=objectives,
        default_objective=next(iter(objectives)), layers=[],
        default_units=[expert[path] for path in routers],
        unit_presets={
            **{f"layer {i} experts": [expert[path]] for i, path in enumerate(routers)},
            "all experts": [expert[path] for path in routers],
        },
        output_kind="languages" if inputs is None else "tokens",
        samples={"words": words[:: max(1, len(words) // 20)][:20], "languages": languages},
        default_lesion="zero",
    )
