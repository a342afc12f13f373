"""Hugging Face subjects: tiny GPT-2-like and Mixtral-like models built from random configs here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from msa_core import shapley_modes  # noqa: E402
from msa_core.models import ModelLoadError, load_subject  # noqa: E402
from msa_core.models.hf import SkippableSparseMoe  # noqa: E402


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mixtral_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixtral")
    torch.manual_seed(0)
    config = transformers.MixtralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                        num_experts_per_tok=2, vocab_size=50)
    transformers.MixtralForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_subject(str(gpt2_dir))


@pytest.fixture(scope="module")
def mixtral(mixtral_dir):
    return load_subject(str(mixtral_dir))


def _values(game, rows):
    return game(torch.tensor(rows, dtype=torch.bool))


def test_gpt2_catalogue(gpt2):
    layers = {layer.path: layer for layer in gpt2.layers}
    heads = layers["transformer.h.0.attn.heads"]
    assert heads.unit_kind == "head" and heads.n_units == 2
    spec = heads.to_spec()
    assert spec.path == "transformer.h.0.attn.c_proj" and spec.site == "input" and spec.group_size == 8
    assert layers["transformer.h.1.mlp.act"].n_units == 64
    assert gpt2.unit_presets["all heads"] == ["transformer.h.0.attn.heads", "transformer.h.1.attn.heads"]
    assert gpt2.inputs["input_ids"].shape == (4, 16)
    assert gpt2.output_kind == "tokens" and gpt2.default_objective == "token log-prob"


def test_gpt2_head_lesions(gpt2):
    game = gpt2.game(units="transformer.h.0.attn.heads")
    assert game.n_players == 2 and game.output_shape == (4, 15)
    values = _values(game, [[True, True], [False, True], [False, False]])
    with torch.no_grad():
        intact = gpt2.model(**gpt2.inputs).logits
    ids = gpt2.inputs["input_ids"]
    expected = intact[:, :-1].double().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(values[0], expected, atol=1e-6)  # lesioning none changes nothing
    assert not torch.allclose(values[1], values[0])  # lesioning head 0 changes the output
    assert torch.isfinite(values).all()
    result = shapley_modes(game, 2, method="exact")
    assert torch.allclose(result.values.sum(0), values[0] - values[2], atol=1e-9)


def test_gpt2_neurons_and_scalar_game(gpt2):
    game = gpt2.game(units="transformer.h.1.mlp.act", objective="mean log-likelihood")
    assert game.n_players == 64 and game.output_shape == ()
    result = shapley_modes(game, 64, n_permutations=2)
    assert torch.isfinite(result.values).all()


def test_mixtral_wrapper_matches_the_original(mixtral, mixtral_dir):
    blocks = [m for m in mixtral.model.modules() if isinstance(m, SkippableSparseMoe)]
    assert len(blocks) == 2
    original = transformers.AutoModelForCausalLM.from_pretrained(str(mixtral_dir), local_files_only=True).eval()
    assert set(original.state_dict()) == set(mixtral.model.state_dict())
    with torch.no_grad():
        expected = original(**mixtral.inputs).logits
        got = mixtral.model(**mixtral.inputs).logits
    assert torch.allclose(got, expected, atol=1e-6)


def test_mixtral_expert_lesions(mixtral):
    layers = {layer.path: layer for layer in mixtral.layers}
    experts = layers["model.layers.0.mlp.router_logits"]
    assert experts.unit_kind == "expert" and experts.n_units == 4 and experts.to_spec().lesion == "skip"
    assert "model.layers.0.self_attn.heads" in layers
    assert mixtral.default_units == ["model.layers.0.mlp.router_logits"]
    game = mixtral.game(units=mixtral.unit_presets["all experts"])
    assert game.n_players == 8 and all(r.lesion == "skip" for r in game.resolved)
    rows = [[True] * 8, [False] + [True] * 7, [False, False, False, True] + [True] * 4, [False] * 8]
    values = _values(game, rows)
    assert torch.isfinite(values).all()  # all experts skipped: zero MoE output, finite log-probs
    with torch.no_grad():
        intact = mixtral.model(**mixtral.inputs).logits
    ids = mixtral.inputs["input_ids"]
    expected = intact[:, :-1].double().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(values[0], expected, atol=1e-6)
    assert not torch.allclose(values[1], values[0])
    assert not torch.allclose(values[2], values[1])


def test_mixtral_exact_shapley_over_one_layer_of_experts(mixtral):
    game = mixtral.game(objective="mean log-likelihood")
    assert game.n_players == 4
    result = shapley_modes(game, 4, method="exact")
    gap = _values(game, [[True] * 4])[0] - _values(game, [[False] * 4])[0]
    assert torch.allclose(result.values.sum(0), gap, atol=1e-9)
    heads = mixtral.game(units="model.layers.1.self_attn.heads")
    values = _values(heads, [[True, True], [True, False]])
    assert not torch.allclose(values[0], values[1])


def test_token_id_inputs_from_npz(gpt2_dir, tmp_path):
    ids = np.random.default_rng(1).integers(0, 50, size=(3, 9))
    np.savez(tmp_path / "ids.npz", input_ids=ids)
    subject = load_subject(str(gpt2_dir), inputs=str(tmp_path / "ids.npz"))
    assert subject.inputs["input_ids"].shape == (3, 9)
    assert subject.game().output_shape == (3, 8)
    with pytest.raises(ModelLoadError, match="token ids"):
        load_subject(str(gpt2_dir), inputs=np.zeros((2, 4), np.float32))


# ---------------------------------------------------------------- coverage of the decoder families

from msa_core.models.lm_objectives import MeanLogLikelihood  # noqa: E402
from tests.lm_fixtures import save_model  # noqa: E402


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_subject(str(save_model(tmp_path_factory.mktemp("llama"), "llama")))


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("qwen2moe"), "qwen2_moe")


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return load_subject(str(qwen_dir))


def _with_output_zeroed(subject, module, objective, replace_first=False):
    """The objective on the intact model with ``module``'s output (or its first element) set to zero."""
    def hook(_, args, output):
        if replace_first:
            return (torch.zeros_like(output[0]), *output[1:])
        return torch.zeros_like(output)

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = subject.model(**subject.inputs).logits
    finally:
        handle.remove()
    return objective(logits.unsqueeze(0))[0]


def test_gated_mlp_neurons_are_the_activation_that_multiplies_up_proj(llama):
    path = "model.layers.1.mlp.act_fn"
    assert path in llama.unit_presets["layer 1 neurons"]
    game = llama.game(units=path, objective="mean log-likelihood")
    assert game.n_players == 64  # intermediate size: one neuron per gate_proj output
    objective = MeanLogLikelihood(llama.inputs["input_ids"], llama.inputs["attention_mask"])
    # every neuron lesioned: act_fn(gate) * up = 0, so the MLP adds nothing
    expected = _with_output_zeroed(llama, llama.model.get_submodule("model.layers.1.mlp"), objective)
    assert torch.allclose(game(torch.zeros((1, 64), dtype=torch.bool))[0], expected, atol=1e-6)


def test_llama_heads_lesioned_remove_the_attention_output(llama):
    game = llama.game(units="model.layers.2.self_attn.heads", objective="mean log-likelihood")
    assert game.n_players == 4 and game.path.startswith("prefix")
    objective = MeanLogLikelihood(llama.inputs["input_ids"], llama.inputs["attention_mask"])
    attention = llama.model.get_submodule("model.layers.2.self_attn")
    expected = _with_output_zeroed(llama, attention, objective, replace_first=True)  # o_proj has no bias
    assert torch.allclose(game(torch.zeros((1, 4), dtype=torch.bool))[0], expected, atol=1e-6)


def test_qwen2_moe_wrapper_matches_and_the_shared_expert_is_a_player(qwen, qwen_dir):
    blocks = [m for m in qwen.model.modules() if isinstance(m, SkippableSparseMoe)]
    assert len(blocks) == 3 and all(block.has_shared_expert for block in blocks)
    original = transformers.AutoModelForCausalLM.from_pretrained(str(qwen_dir), local_files_only=True).eval()
    assert set(original.state_dict()) == set(qwen.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(qwen.model(**qwen.inputs).logits, original(**qwen.inputs).logits, atol=1e-6)
    layers = {layer.path: layer for layer in qwen.layers}
    shared = layers["model.layers.1.mlp.shared_expert_scale"]
    assert shared.unit_kind == "expert" and shared.n_units == 1 and shared.to_spec().lesion == "zero"
    units = qwen.unit_presets["layer 1 experts"]
    assert units == ["model.layers.1.mlp.router_logits", "model.layers.1.mlp.shared_expert_scale"]
    assert qwen.default_units == ["model.layers.0.mlp.router_logits", "model.layers.0.mlp.shared_expert_scale"]
    game = qwen.game(units=units, objective="mean log-likelihood")
    assert game.n_players == 5 and game.unit_labels[-1] == "model.layers.1.mlp.shared_expert_scale:0"
    objective = MeanLogLikelihood(qwen.inputs["input_ids"], qwen.inputs["attention_mask"])
    shared_module = original.get_submodule("model.layers.1.mlp.shared_expert")
    handle = shared_module.register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            expected = objective(original(**qwen.inputs).logits.unsqueeze(0))[0]
    finally:
        handle.remove()
    only_shared_lesioned = torch.tensor([[True] * 4 + [False]])
    assert torch.allclose(game(only_shared_lesioned)[0], expected, atol=1e-6)
    result = shapley_modes(game, 5, method="exact")
    full, empty = game(torch.tensor([[True] * 5, [False] * 5]))
    assert torch.isfinite(empty) and torch.allclose(result.values.sum(0), full - empty, atol=1e-9)
