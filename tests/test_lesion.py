"""Lesion games on real (tiny) PyTorch models: hand-computed values, paths, hooks, batching, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from msa_core import UnitSpec, lesion_game, list_layers, per_class_accuracy, shapley_modes
from msa_core.lesion import lesion_hooks, resolve_units


def hand_mlp() -> nn.Sequential:
    """2 -> 3 (ReLU) -> 1 with integer weights, so every value can be computed by hand."""
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        model[2].bias.copy_(torch.tensor([0.5]))
    return model


INPUTS = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
# hidden activations by hand: x1 -> relu(1, 2, 1+2-1) = (1, 2, 2); x2 -> (3, 1, 3)
HIDDEN = torch.tensor([[1.0, 2.0, 2.0], [3.0, 1.0, 3.0]])
MEAN_HIDDEN = torch.tensor([2.0, 1.5, 2.5])
OUT_WEIGHTS = torch.tensor([1.0, 2.0, 3.0])


def hand_value(coalition: tuple[bool, bool, bool], replacement: torch.Tensor) -> torch.Tensor:
    """Output for both inputs with the hidden units outside the coalition replaced: shape (2, 1)."""
    mask = torch.tensor(coalition)
    hidden = torch.where(mask, HIDDEN, replacement)
    return (hidden @ OUT_WEIGHTS + 0.5).unsqueeze(1)


ALL_COALITIONS = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize("fast_paths", [True, False])
@pytest.mark.parametrize("lesion, replacement", [("zero", torch.zeros(3)), ("mean", MEAN_HIDDEN)])
def test_values_match_hand_computation(lesion, replacement, fast_paths):
    game = lesion_game(hand_mlp(), "1", INPUTS, lesion=lesion, fast_paths=fast_paths)
    assert game.n_players == 3 and game.output_shape == (2, 1)
    assert game.path == ("linear-chain" if fast_paths else "hooks")
    coalitions = torch.tensor(ALL_COALITIONS)
    values = game(coalitions)
    expected = torch.stack([hand_value(c, replacement) for c in ALL_COALITIONS])
    torch.testing.assert_close(values, expected)
    # spot checks written out by hand: all intact -> (11.5, 14.5); zero-lesion unit 2 -> (5.5, 5.5)
    if lesion == "zero":
        torch.testing.assert_close(values[-1, :, 0], torch.tensor([11.5, 14.5]))
        torch.testing.assert_close(values[6, :, 0], torch.tensor([5.5, 5.5]))
    # the game is additive in the hidden units, so unit i's Shapley mode is w_i * (h_i - r_i)
    exact = shapley_modes(game, 3, method="exact")
    expected_modes = (OUT_WEIGHTS * (HIDDEN - replacement)).T.unsqueeze(2).double()
    torch.testing.assert_close(exact.values, expected_modes)


def deep_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 12), nn.LeakyReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4)
    )


@pytest.mark.parametrize("layer, expected_path", [("1", "cut"), ("3", "cut"), ("5", "linear-chain"), ("2", "cut")])
@pytest.mark.parametrize("lesion", ["zero", "mean"])
def test_all_evaluation_paths_agree(layer, expected_path, lesion):
    model = deep_mlp()
    inputs = torch.randn(20, 6)
    fast = lesion_game(model, layer, inputs, lesion=lesion)
    slow = lesion_game(model, layer, inputs, lesion=lesion, fast_paths=False)
    if layer in ("1", "3"):
        expected_path = "cut"  # followed by a Linear but preceded by more work: linear chain needs 2-D units
    assert fast.path in (expected_path, "linear-chain")
    coalitions = torch.rand(9, fast.n_players) < 0.5
    torch.testing.assert_close(fast(coalitions), slow(coalitions), rtol=1e-5, atol=1e-5)
    if fast.path == "linear-chain":
        permutations = torch.stack([torch.randperm(fast.n_players) for _ in range(4)])
        chain = fast.evaluate_permutations(permutations)
        positions = torch.argsort(permutations, 1)
        prefixes = torch.stack([positions < j for j in range(fast.n_players + 1)], 1).reshape(-1, fast.n_players)
        torch.testing.assert_close(chain, slow(prefixes).reshape(chain.shape), rtol=1e-5, atol=1e-5)


def test_linear_chain_with_accuracy_objective_matches_hooks():
    model = deep_mlp(1)
    inputs = torch.randn(64, 6)
    labels = model(inputs).argmax(1)
    labels[::3] = (labels[::3] + 1) % 4  # not perfectly accurate
    objective = per_class_accuracy(labels, 4)
    fast = lesion_game(model, "5", inputs, objective=objective)
    slow = lesion_game(model, "5", inputs, objective=objective, fast_paths=False)
    assert fast.path == "linear-chain"
    fast_modes = shapley_modes(fast, 8, method="exact").values
    slow_modes = shapley_modes(slow, 8, method="exact").values
    torch.testing.assert_close(fast_modes, slow_modes, rtol=0, atol=1e-12)
    sampled_fast = shapley_modes(fast, 8, n_permutations=30, seed=2).values
    sampled_slow = shapley_modes(slow, 8, n_permutations=30, seed=2).values
    torch.testing.assert_close(sampled_fast, sampled_slow, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fast_paths", [True, False])
def test_results_identical_for_batch_sizes_1_2_3_and_large(fast_paths):
    model = deep_mlp(2)
    inputs = torch.randn(10, 6)
    results = []
    for batch_size in (1, 2, 3, None):
        game = lesion_game(model, "3", inputs, batch_size=batch_size, fast_paths=fast_paths)
        results.append(shapley_modes(game, game.n_players, n_permutations=6, seed=4, batch_size=batch_size))
    for other in results[1:]:
        torch.testing.assert_close(other.values, results[0].values, rtol=0, atol=1e-6)


class Conv(nn.Module):
    """A non-Sequential conv net: the hook path, channels on axis 1."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.features(x))


def test_conv_channels_are_units_on_axis_1_and_mean_lesion_is_per_position():
    torch.manual_seed(0)
    model = Conv().eval()
    inputs = torch.randn(3, 1, 5, 5)
    game = lesion_game(model, "features.1", inputs, lesion="mean")
    assert game.n_players == 4 and game.path == "hooks"
    assert game.output_shape == (3, 2, 5, 5)
    # by hand: replace channel 2 with its mean map over the 3 inputs
    activation = model.features(inputs)
    edited = activation.clone()
    edited[:, 2] = activation[:, 2].mean(0)
    expected = model.head(edited)
    coalition = torch.tensor([[True, True, False, True]])
    torch.testing.assert_close(game(coalition)[0], expected)


def test_several_layers_are_players_in_order():
    model = deep_mlp()
    game = lesion_game(model, ["1", "5"], torch.randn(5, 6))
    assert game.n_players == 16 + 8
    assert game.unit_labels[0] == "1:0" and game.unit_labels[16] == "5:0" and game.unit_labels[-1] == "5:7"
    result = shapley_modes(game, game.n_players, n_permutations=5, seed=0)
    assert result.efficiency_gap() < 1e-9


def test_input_site_with_groups_lesions_heads():
    """Units on a module's input, in groups (as attention heads feed an output projection)."""
    torch.manual_seed(0)
    projection = nn.Linear(6, 3)
    model = nn.Sequential(nn.Linear(4, 6), projection)
    inputs = torch.randn(5, 4)
    game = lesion_game(model, UnitSpec("1", site="input", group_size=2, kind="head"), inputs)
    assert game.n_players == 3
    hidden = model[0](inputs)
    hidden[:, 2:4] = 0  # head 1 lesioned
    torch.testing.assert_close(game(torch.tensor([[True, False, True]]))[0], projection(hidden))


def test_skip_lesion_sends_minus_infinity():
    model = nn.Sequential(nn.Linear(3, 4), nn.Identity())
    resolved, _ = resolve_units(model, UnitSpec("0", lesion="skip", kind="expert"), torch.randn(2, 3))
    seen = {}
    model[1].register_forward_hook(lambda m, a, out: seen.setdefault("out", out.clone()))
    with lesion_hooks(resolved, [torch.tensor([[True, False, True, False]])], rows_per_coalition=2):
        model(torch.randn(2, 3))
    assert torch.isinf(seen["out"][:, [1, 3]]).all() and torch.isfinite(seen["out"][:, [0, 2]]).all()


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.armed = False

    def forward(self, x):
        hidden = self.body(x)
        if self.armed:
            raise RuntimeError("boom in the middle of the forward pass")
        return hidden.sum(1, keepdim=True)


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_are_removed_when_the_forward_pass_raises():
    model = Exploding()
    game = lesion_game(model, "body.1", torch.randn(4, 3))
    assert no_hooks_left(model)
    model.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        game(torch.ones((2, 4), dtype=torch.bool))
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError, match="boom"):
        shapley_modes(game, 4, n_permutations=2)
    assert no_hooks_left(model)


def test_list_layers_reports_shapes_kinds_and_counts():
    layers = {layer.path: layer for layer in list_layers(Conv(), torch.randn(2, 1, 5, 5))}
    assert layers["features.0"].unit_kind == "channel" and layers["features.0"].n_units == 4
    assert layers["features.0"].output_shape == (2, 4, 5, 5)
    mlp = {layer.path: layer for layer in list_layers(deep_mlp(), torch.randn(2, 6))}
    assert mlp["3"].unit_kind == "neuron" and mlp["3"].n_units == 12 and mlp["3"].module_type == "LeakyReLU"

    class Routed(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(3, 4)

        def forward(self, x):
            return self.router(x)

    routed = list_layers(Routed(), torch.randn(2, 3))[0]
    assert routed.unit_kind == "expert" and routed.to_spec().lesion == "skip"


# ---------------------------------------------------------------- bad input
def test_unknown_layer_names_close_matches():
    with pytest.raises(ValueError, match=r"no layer 'features\.9'.*Did you mean 'features\.1', 'features\.0'"):
        lesion_game(Conv(), "features.9", torch.randn(2, 1, 5, 5))


def test_wrong_coalition_shape_and_dtype_are_clear_errors():
    game = lesion_game(hand_mlp(), "1", INPUTS)
    with pytest.raises(ValueError, match=r"coalitions have 5 columns but this game has 3 players"):
        game(torch.ones((2, 5), dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must be a torch\.bool tensor of shape \(batch, 3\)"):
        game(torch.ones((2, 3)))


def test_inputs_the_model_rejects_are_a_clear_error():
    with pytest.raises(ValueError, match="could not run on these inputs"):
        lesion_game(hand_mlp(), "1", torch.randn(4, 7))


def test_absent_device_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        lesion_game(hand_mlp(), "1", INPUTS, device="cuda")


def test_bad_lesion_and_units_are_clear_errors():
    with pytest.raises(ValueError, match="lesion must be one of"):
        lesion_game(hand_mlp(), "1", INPUTS, lesion="median")
    with pytest.raises(ValueError, match="no units given"):
        lesion_game(hand_mlp(), [], INPUTS)
    with pytest.raises(ValueError, match="not a multiple of group_size"):
        lesion_game(hand_mlp(), UnitSpec("1", group_size=2), INPUTS)


def test_fused_kernel_and_tensor_fallback_give_the_same_chain_values(monkeypatch):
    import msa_core.games as games_module
    from msa_core import kernels

    model = deep_mlp(3)
    inputs = torch.randn(40, 6)
    labels = model(inputs).argmax(1)
    labels[::4] = (labels[::4] + 2) % 4
    game = lesion_game(model, "5", inputs, objective=per_class_accuracy(labels, 4))
    permutations = torch.stack([torch.randperm(8) for _ in range(6)])
    assert kernels.numba_available(), "numba is a dependency: the fused kernel must compile here"
    fused = game.evaluate_permutations(permutations)
    monkeypatch.setattr(games_module.LesionGame, "_fused_top1", lambda self: False)
    fallback = game.evaluate_permutations(permutations)
    torch.testing.assert_close(fused, fallback, rtol=0, atol=1e-12)
    slow = lesion_game(model, "5", inputs, objective=per_class_accuracy(labels, 4), fast_paths=False)
    positions = torch.argsort(permutations, 1)
    prefixes = torch.stack([positions < j for j in range(9)], 1).reshape(-1, 8)
    torch.testing.assert_close(fused, slow(prefixes).reshape(fused.shape), rtol=0, atol=1e-12)


def test_the_fused_kernel_leaves_torchs_thread_count_as_the_caller_set_it():
    """numba's OpenMP layer shares torch's runtime: a parallel kernel must not reset torch's threads."""
    model = deep_mlp(4)
    inputs = torch.randn(30, 6)
    game = lesion_game(model, "5", inputs, objective=per_class_accuracy(model(inputs).argmax(1), 4))
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            game.evaluate_permutations(torch.stack([torch.randperm(8) for _ in range(3)]))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
