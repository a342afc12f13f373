"""User-written objectives (plain callables) on every evaluation path: values, shapes, batching, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import msa_core.kernels as kernels
from msa_core import lesion_game, per_class_accuracy, shapley_modes
from msa_core.objectives import ObjectiveError

N_CLASSES = 5


def mlp_and_data(dtype=torch.float64, n_inputs: int = 60, seed: int = 0):
    """A 20 -> 12 (LeakyReLU) -> 5 classifier, inputs and labels that are right about 2/3 of the time."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 12), nn.LeakyReLU(), nn.Linear(12, N_CLASSES)).to(dtype).eval()
    inputs = torch.randn(n_inputs, 20, dtype=dtype)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    labels[::3] = (labels[::3] + 1) % N_CLASSES
    return model, inputs, labels


def accuracy_callable(labels: torch.Tensor):
    """Per-class accuracy written the way a user would: logits (c, inputs, classes) -> (c, classes)."""
    onehot = torch.nn.functional.one_hot(labels, N_CLASSES).to(torch.float32)
    counts = onehot.sum(0).clamp_min(1)  # a class with no input scores 0, as in the built-in

    def per_class(logits: torch.Tensor) -> torch.Tensor:
        correct = logits.gather(-1, labels.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(-1) >= logits.amax(-1)
        return correct.to(torch.float32) @ onehot / counts

    return per_class


def accuracy_and_margin(labels: torch.Tensor):
    """A value of shape (classes, 2) per coalition: accuracy and mean label logit of each class."""
    onehot = torch.nn.functional.one_hot(labels, N_CLASSES).to(torch.float64)
    counts = onehot.sum(0).clamp_min(1)  # a class with no input scores 0, as in the built-in

    def score(logits: torch.Tensor) -> torch.Tensor:
        label_logit = logits.gather(-1, labels.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(-1)
        correct = (label_logit >= logits.amax(-1)).to(torch.float64)
        return torch.stack([correct @ onehot / counts, label_logit.to(torch.float64) @ onehot / counts], -1)

    return score


def by_hand(model: nn.Sequential, inputs: torch.Tensor, objective, coalition: torch.Tensor) -> torch.Tensor:
    """The objective of one coalition, with the real model: hidden units outside it set to zero."""
    with torch.no_grad():
        hidden = model[1](model[0](inputs)) * coalition.to(inputs.dtype)
        return objective(model[2](hidden).unsqueeze(0))[0]


def prefixes(permutations: torch.Tensor) -> torch.Tensor:
    """Every prefix coalition of every join order: ``(m * (n + 1), n)``."""
    m, n = permutations.shape
    positions = torch.argsort(permutations, 1)
    return torch.stack([positions < j for j in range(n + 1)], 1).reshape(-1, n)


def test_callable_accuracy_gives_the_builtin_modes():
    model, inputs, labels = mlp_and_data(torch.float32)
    builtin = lesion_game(model, "1", inputs, objective=per_class_accuracy(labels, N_CLASSES))
    custom = lesion_game(model, "1", inputs, objective=accuracy_callable(labels))
    assert builtin.path == custom.path == "linear-chain" and custom.output_shape == (N_CLASSES,)
    for options in ({"n_permutations": 40, "seed": 3}, {"method": "exact"}):
        expected = shapley_modes(builtin, 12, **options).values
        got = shapley_modes(custom, 12, **options).values
        # the callable returns float32 (k / class size): equal up to that rounding
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert expected.abs().max() > 0.01  # a game where units matter


def test_chain_values_equal_the_callable_on_each_coalition_with_the_real_model():
    model, inputs, labels = mlp_and_data(torch.float64)
    objective = accuracy_and_margin(labels)
    game = lesion_game(model, "1", inputs, objective=objective)
    assert game.output_shape == (N_CLASSES, 2)
    permutations = torch.stack([torch.randperm(12, generator=torch.Generator().manual_seed(s)) for s in range(5)])
    chain = game.evaluate_permutations(permutations)
    assert chain.shape == (5, 13, N_CLASSES, 2)
    coalitions = prefixes(permutations)
    expected = torch.stack([by_hand(model, inputs, objective, c) for c in coalitions]).reshape(chain.shape)
    # float64 logits: sums in join order vs the model's own product differ by ~1e-15, no argmax flips
    torch.testing.assert_close(chain, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(game(coalitions).reshape(chain.shape), expected, rtol=0, atol=1e-12)
    result = shapley_modes(game, 12, n_permutations=8, seed=1)
    assert result.values.shape == (12, N_CLASSES, 2) and result.efficiency_gap() < 1e-9


@pytest.mark.parametrize("kernel", [True, False])
def test_batch_sizes_1_2_3_and_large_give_identical_modes(kernel, monkeypatch):
    if not kernel:
        monkeypatch.setattr(kernels, "prefix_kernel_available", lambda: False)
    model, inputs, labels = mlp_and_data(torch.float32, n_inputs=30, seed=1)
    objective = accuracy_and_margin(labels)
    results = []
    for batch_size in (1, 2, 3, None):
        game = lesion_game(model, "1", inputs, objective=objective, batch_size=batch_size)
        results.append(shapley_modes(game, 12, n_permutations=6, seed=5, batch_size=batch_size).values)
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=0, atol=1e-12)


def test_prefix_kernel_and_tensor_fallback_give_the_same_bits():
    torch.manual_seed(0)
    contributions = torch.randn(7, 33)
    joins = torch.stack([torch.randperm(7) for _ in range(3)])[:, :5]
    outputs = []
    for compiled in (True, False):
        states = torch.randn(3, 33, generator=torch.Generator().manual_seed(1))
        out = torch.empty(3, 5, 33)
        if compiled:
            assert kernels.prefix_kernel_available(), "numba is a dependency: the kernel must compile here"
            kernels.prefix_states(contributions, states, joins, out)
        else:
            for j in range(5):  # the definition, written out
                states = states + contributions[joins[:, j]]
                out[:, j] = states
        outputs.append((out, states))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_the_callable_sees_logits_in_the_models_dtype_in_large_batches():
    model, inputs, labels = mlp_and_data(torch.float32)
    per_class = accuracy_callable(labels)
    seen = []

    def recording(logits):
        seen.append((logits.dtype, logits.shape[0]))
        return per_class(logits)

    game = lesion_game(model, "1", inputs, objective=recording)
    seen.clear()
    shapley_modes(game, 12, n_permutations=20, seed=0)
    assert {dtype for dtype, _ in seen} == {torch.float32}
    # the estimator's endpoints, the walk's endpoints (once per game), then 20 orders x 11 inner joins
    # in one call: not one call per join or per coalition
    assert [rows for _, rows in seen] == [2, 2, 20 * 11]


def test_numpy_values_are_accepted():
    model, inputs, labels = mlp_and_data()
    per_class = accuracy_callable(labels)
    game = lesion_game(model, "1", inputs, objective=lambda logits: per_class(logits).numpy())
    reference = lesion_game(model, "1", inputs, objective=per_class)
    torch.testing.assert_close(
        shapley_modes(game, 12, n_permutations=5, seed=2).values,
        shapley_modes(reference, 12, n_permutations=5, seed=2).values,
    )


class TinyConv(nn.Module):
    """A conv net that is not Sequential: the hook path, outputs are images."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_callable_on_image_outputs_is_linear_in_the_game():
    """The modes of the mean image are the mean of the per-input image modes (exact Shapley is linear)."""
    torch.manual_seed(0)
    model, inputs = TinyConv().double().eval(), torch.randn(4, 1, 6, 6, dtype=torch.float64)
    mean_image = lesion_game(model, "body.1", inputs, objective=lambda out: out.mean(1))
    per_input = lesion_game(model, "body.1", inputs)
    assert mean_image.path == "hooks" and mean_image.output_shape == (2, 6, 6)
    torch.testing.assert_close(
        shapley_modes(mean_image, 6, method="exact").values,
        shapley_modes(per_input, 6, method="exact").values.mean(1),
    )


# ---------------------------------------------------------------- bad callables: one clear message
def test_a_callable_that_keeps_the_inputs_axis_is_one_clear_error():
    model, inputs, labels = mlp_and_data()

    def wrong_axis(logits):
        return logits.mean(0)  # reduced the coalitions, kept the inputs

    with pytest.raises(ObjectiveError, match=r"objective 'wrong_axis' returned shape \(60, 5\) for outputs of shape "
                                             r"\(1, 60, 5\).*one value per coalition"):
        lesion_game(model, "1", inputs, objective=wrong_axis)


def test_a_callable_whose_shape_changes_between_calls_is_one_clear_error():
    model, inputs, _ = mlp_and_data()

    def unstable(logits):
        return logits.mean(1) if logits.shape[0] == 1 else logits.mean(1)[:, :3]

    game = lesion_game(model, "1", inputs, objective=unstable)
    with pytest.raises(ObjectiveError, match=r"returned shape \(2, 3\).*it must return \(2, 5\)"):
        shapley_modes(game, 12, n_permutations=3)


def test_a_callable_returning_nan_is_one_clear_error_on_the_chain_path():
    model, inputs, labels = mlp_and_data()
    per_class = accuracy_callable(labels)

    def nan_in_the_walk(logits):
        values = per_class(logits)
        if logits.shape[0] > 2:  # the probe (1 row) and the endpoints (2 rows) pass; joins come in larger calls
            values[1:] = float("nan")
        return values

    game = lesion_game(model, "1", inputs, objective=nan_in_the_walk)
    assert game.path == "linear-chain"
    with pytest.raises(ObjectiveError, match=r"returned NaN or infinity for \d+ of \d+ coalitions; the first has "
                                             r"2 units intact.*divisions by zero or log\(0\)"):
        shapley_modes(game, 12, n_permutations=3)


def test_a_callable_that_fails_or_returns_no_tensor_is_one_clear_error():
    model, inputs, _ = mlp_and_data()

    def broken(logits):
        return logits[:, :, 99]

    with pytest.raises(ObjectiveError, match=r"objective 'broken' failed on the intact model's outputs of shape "
                                             r"\(1, 60, 5\).*IndexError"):
        lesion_game(model, "1", inputs, objective=broken)
    with pytest.raises(ObjectiveError, match=r"must return a torch\.Tensor of shape \(1, \.\.\.\).*returned float"):
        lesion_game(model, "1", inputs, objective=lambda logits: float(logits.mean()))
    with pytest.raises(ObjectiveError, match="must return real numbers"):
        lesion_game(model, "1", inputs, objective=lambda logits: logits.mean(1).to(torch.complex64))
