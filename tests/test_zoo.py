"""Tests of the built-in model zoo (msa_core.zoo): loading, shapes, scores, MoE lesion semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msa_core.zoo import BUILTINS, all_block_paths, assets_dir, default_units, load_builtin
from msa_core.zoo.architectures import MoELayer
from msa_core.zoo.lm import BOS_ID, EOS_ID, PAD_ID, decode_tokens, encode_words, word_log_likelihood

MLPS = ["mlp-digits", "mlp-digits-l1", "mlp-digits-l2"]
FASHION = ["mlp-fashion", "mlp-fashion-l1", "mlp-fashion-l2"]


@pytest.fixture(scope="module")
def scores() -> dict:
    return json.loads((assets_dir() / "scores.json").read_text())


@pytest.fixture(scope="module")
def moe():
    return load_builtin("moe-lm")


def test_registry_names_and_tasks():
    assert set(BUILTINS) == {"mlp-digits", "mlp-digits-l1", "mlp-digits-l2", "dcgan-digits", "moe-lm", *FASHION}
    assert {s.task for s in BUILTINS.values()} <= {"classifier", "generator", "language-model"}
    for name, spec in BUILTINS.items():
        assert spec.name == name and spec.description and "\n" not in spec.description


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="mlp-digits"):
        load_builtin("no-such-model")
    with pytest.raises(KeyError):
        default_units("no-such-model")


def test_default_units_resolve_to_modules():
    for name in BUILTINS:
        model, _ = load_builtin(name)
        modules = dict(model.named_modules())
        units = default_units(name)
        for path in [units] if isinstance(units, str) else units:
            assert path in modules, (name, path)
        for path in all_block_paths(name):
            assert path in modules, (name, path)
    assert default_units("mlp-digits") == "1"
    assert all_block_paths() == ["net.0", "net.1", "net.2"]
    assert default_units("moe-lm") == ["blocks.0.moe.router", "blocks.1.moe.router"]


def test_eval_npz_has_no_pickles_and_dtypes():
    d = np.load(assets_dir() / "digits_eval.npz", allow_pickle=False)
    assert d["x"].dtype == np.float32 and d["x"].shape == (500, 64)
    assert d["y"].dtype == np.int64 and d["y"].shape == (500,)
    assert d["images"].shape == (500, 8, 8)
    z = np.load(assets_dir() / "dcgan_digits_eval.npz", allow_pickle=False)["z"]
    assert z.dtype == np.float32 and z.shape == (32, 16)
    m = np.load(assets_dir() / "moe_lm_eval.npz", allow_pickle=False)
    assert m["tokens"].dtype == np.int64 and m["tokens"].ndim == 2
    assert m["vocab"].dtype.kind == "U" and m["languages"].dtype.kind == "U"
    assert len(m["languages"]) >= 4


@pytest.mark.parametrize("name", MLPS)
def test_mlp_accuracy_matches_model_card(name, scores):
    model, data = load_builtin(name)
    assert not model.training
    assert [n for n, _ in model.named_children()] == ["0", "1", "2"]
    with torch.no_grad():
        logits = model(torch.from_numpy(data["x"]))
    assert logits.shape == (500, 10)
    acc = (logits.argmax(1).numpy() == data["y"]).mean()
    assert abs(acc - scores[name]["test_accuracy"]) <= 0.005
    assert acc >= 0.95


def test_fashion_eval_set_is_compact_uint8_and_expands():
    with np.load(assets_dir() / "fashion_eval.npz", allow_pickle=False) as raw:
        assert raw["images"].dtype == np.uint8 and raw["images"].shape == (1024, 28, 28)
        assert raw["y"].dtype == np.uint8 and raw["y"].shape == (1024,)
        stored = raw["images"]
    model, data = load_builtin("mlp-fashion")
    assert data["x"].dtype == np.float32 and data["x"].shape == (1024, 784)
    assert data["y"].dtype == np.int64 and sorted(set(data["y"].tolist())) == list(range(10))
    np.testing.assert_array_equal(np.round(data["x"][3] * 255).astype(np.uint8), stored[3].reshape(-1))
    assert [str(c) for c in data["classes"]][:2] == ["T-shirt/top", "Trouser"]


@pytest.mark.parametrize("name", FASHION)
def test_fashion_mlp_accuracy_matches_model_card(name, scores):
    model, data = load_builtin(name)
    assert model.config == {"n_inputs": 784, "n_hidden": 200, "n_classes": 10}
    with torch.no_grad():
        acc = (model(torch.from_numpy(data["x"])).argmax(1).numpy() == data["y"]).mean()
    assert abs(acc - scores[name]["test_accuracy"]) <= 0.001 and acc >= 0.8
    assert scores[name]["penalty_coef"] == (0.0 if name == "mlp-fashion" else 1e-4)


def test_fashion_penalties_shape_the_weights(scores):
    # L1 drives most weights to ~0 and L2 shrinks the norm: the penalties did what they are for
    s = {n: scores[n] for n in FASHION}
    assert s["mlp-fashion-l1"]["frac_weights_below_1e-2"] > 2 * s["mlp-fashion"]["frac_weights_below_1e-2"]
    assert s["mlp-fashion-l2"]["weight_l2"] < s["mlp-fashion"]["weight_l2"]


def test_mlp_hidden_layer_shape():
    model, data = load_builtin("mlp-digits")
    seen = {}
    h = model[1].register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    try:
        with torch.no_grad():
            model(torch.from_numpy(data["x"][:7]))
    finally:
        h.remove()
    assert seen["h"].shape == (7, 100)


def test_dcgan_shapes_and_range():
    model, data = load_builtin("dcgan-digits")
    z = torch.from_numpy(data["z"])
    shapes = {}
    hooks = [dict(model.named_modules())[p].register_forward_hook(
        lambda m, i, o, p=p: shapes.__setitem__(p, tuple(o.shape))) for p in all_block_paths()]
    try:
        with torch.no_grad():
            img = model(z)
    finally:
        for h in hooks:
            h.remove()
    assert img.shape == (32, 1, 32, 32)
    assert img.min() >= -1 and img.max() <= 1
    assert [s[2] for s in shapes.values()] == [4, 8, 16]
    # Fixed latents + eval-mode BatchNorm: generation is deterministic.
    with torch.no_grad():
        assert torch.equal(img, model(z))


def test_encode_decode_roundtrip():
    vocab = ["<pad>", "<bos>", "<eos>", "a", "b", "é"]
    tokens, lengths = encode_words(["ab", "béa"], vocab)
    assert tokens.tolist() == [[BOS_ID, 3, 4, EOS_ID, PAD_ID], [BOS_ID, 4, 5, 3, EOS_ID]]
    assert lengths.tolist() == [4, 5]
    assert decode_tokens(tokens, vocab) == ["ab", "béa"]
    with pytest.raises(ValueError):
        encode_words(["abc"], vocab)


def test_word_log_likelihood_ignores_padding():
    torch.manual_seed(0)
    tokens = torch.tensor([[1, 3, 2, 0, 0], [1, 3, 4, 3, 2]])
    lengths = torch.tensor([3, 5])
    logits = torch.randn(2, 5, 6)
    ll = word_log_likelihood(logits, tokens, lengths)
    lp = torch.log_softmax(logits, -1)
    assert torch.allclose(ll[0], lp[0, 0, 3] + lp[0, 1, 2])
    assert torch.allclose(ll[1], sum(lp[1, t, tokens[1, t + 1]] for t in range(4)))
    logits[0, 2:] = float("nan")  # garbage at padded positions must not leak
    assert torch.allclose(word_log_likelihood(logits, tokens, lengths)[0], ll[0])


def test_moe_lm_heldout_loglik_matches_scores(moe, scores):
    model, data = moe
    vocab = [str(v) for v in data["vocab"]]
    assert model.config["vocab_size"] == len(vocab)
    tokens, lengths = torch.from_numpy(data["tokens"]), torch.from_numpy(data["lengths"])
    assert decode_tokens(tokens[:5], vocab) == [str(w) for w in data["words"][:5]]
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (*tokens.shape, len(vocab))
    ll = word_log_likelihood(logits, tokens, lengths)
    assert abs(ll.mean().item() - scores["moe-lm"]["heldout_mean_loglik_per_word"]) < 1e-2
    for li, lang in enumerate(data["languages"]):
        m = torch.from_numpy(data["language"] == li)
        assert abs(ll[m].mean().item() - scores["moe-lm"]["per_language"][str(lang)]["mean_loglik_per_word"]) < 1e-2


def _run_with_router_override(model, tokens, paths, fn):
    """Run model with router outputs at ``paths`` replaced by fn(logits); return (logits, moe outputs)."""
    modules = dict(model.named_modules())
    outs = {}
    hooks = []
    try:
        for p in paths:
            hooks.append(modules[p].register_forward_hook(lambda m, i, o: fn(o)))
            moe_path = p.rsplit(".", 1)[0]
            hooks.append(modules[moe_path].register_forward_hook(lambda m, i, o, k=moe_path: outs.__setitem__(k, o)))
        with torch.no_grad():
            return model(tokens), outs
    finally:
        for h in hooks:
            h.remove()


def test_moe_all_experts_lesioned_gives_exact_zero(moe):
    model, data = moe
    tokens = torch.from_numpy(data["tokens"][:64])
    routers = default_units("moe-lm")
    logits, outs = _run_with_router_override(model, tokens, routers, lambda o: torch.full_like(o, float("-inf")))
    for out in outs.values():
        assert not torch.isnan(out).any()
        assert torch.equal(out, torch.zeros_like(out))
    assert torch.isfinite(logits).all()
    # Hooks removed: a normal run produces non-zero MoE output again.
    _, outs = _run_with_router_override(model, tokens, routers, lambda o: o)
    assert all(o.abs().sum() > 0 for o in outs.values())


def test_moe_one_expert_lesioned_is_finite(moe):
    model, data = moe
    tokens = torch.from_numpy(data["tokens"][:64])

    def drop_expert_0(o):
        o = o.clone()
        o[..., 0] = float("-inf")
        return o

    logits, outs = _run_with_router_override(model, tokens, default_units("moe-lm"), drop_expert_0)
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(o).all() for o in outs.values())
    for block in model.blocks:
        gates = block.moe.last_gates
        assert torch.equal(gates[..., 0], torch.zeros_like(gates[..., 0]))
        assert torch.allclose(gates.sum(-1), torch.ones_like(gates.sum(-1)))


def test_moe_routing_weights_edge_cases():
    inf = float("inf")
    logits = torch.tensor([
        [1.0, 2.0, 3.0, 4.0],      # normal top-2: experts 3 and 2
        [-inf, -inf, -inf, 5.0],   # only one finite: it gets weight 1
        [-inf, -inf, -inf, -inf],  # none finite: all zero
        [0.0, -inf, -inf, 0.0],    # two finite: equal weight
    ], requires_grad=True)
    g = MoELayer.routing_weights(logits, 2)
    expected_0 = torch.softmax(torch.tensor([3.0, 4.0]), 0)
    assert torch.allclose(g[0], torch.tensor([0.0, 0.0, *expected_0]))
    assert torch.equal(g[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(g[2], torch.zeros(4))
    assert torch.allclose(g[3], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    g.sum().backward()  # gradients stay finite with -inf inputs
    assert torch.isfinite(logits.grad).all()


def test_sweep_recipe_loads_a_width_with_the_builtins_game(tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import save_file

    from msa_core.models import load_subject
    from msa_core.zoo import DigitsMLP
    from msa_core.zoo.sweep import sweep_ref

    (tmp_path / "sweep").mkdir()
    shutil.copy(assets_dir() / "fashion_eval.npz", tmp_path / "fashion_eval.npz")
    torch.manual_seed(0)
    model = DigitsMLP(n_inputs=784, n_hidden=5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "sweep" / "mlp-fashion-l1-n5.safetensors"),
              metadata={"architecture": "DigitsMLP", "config": json.dumps(model.config)})
    monkeypatch.setenv("MSA_ASSETS", str(tmp_path))
    assert sweep_ref("l1", 200) == "mlp-fashion-l1"
    ref = sweep_ref("l1", 5)
    assert ref == "msa_core.zoo.sweep:mlp_fashion_l1_n5"
    subject = load_subject(ref)
    assert subject.default_objective == "per-class accuracy" and subject.default_units == ["1"]
    game = subject.game()
    assert game.n_players == 5 and game.n_inputs == 1024
    assert subject.objective_labels()[0] == "T-shirt/top"
    with pytest.raises(ValueError, match="python -m training sweep"):
        load_subject(sweep_ref("l2", 5))
