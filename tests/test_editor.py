"""msa_core.editor: live evaluation, presets, masks, pruned models that load back, lesion curves, planning.

Also measures (prints, does not assert) the pure evaluation time of one edited coalition per built-in.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from msa_core import UnitSpec, lesion_game
from msa_core.editor import (
    LesionEditor,
    PruneError,
    bottom_k,
    coalition,
    load_mask,
    load_pruned,
    mask_to_json,
    mask_to_npz,
    measure_throughput,
    pruned_bytes,
    pruned_model,
    save_pruned,
    scalarise,
    top_k,
)
from msa_core.objectives import per_class_accuracy


def _mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(20, 6)
    return model, x


def test_coalition_marks_lesioned_units():
    row = coalition(5, [1, 3, 3])
    assert row.dtype == torch.bool and row.tolist() == [[True, False, True, False, True]]
    with pytest.raises(IndexError):
        coalition(3, [3])


def test_editor_matches_the_game_and_caches():
    model, x = _mlp()
    game = lesion_game(model, "1", x)
    labels = torch.randint(0, 3, (20,))
    editor = LesionEditor(game, {"acc": per_class_accuracy(labels, 3), "raw": None})
    assert editor.n_units == 8 and editor.unit_labels[0] == "1:0"
    out = editor.evaluate([2, 5])
    expected = game(coalition(8, [2, 5]))[0]
    assert torch.allclose(out.outputs, expected.float())
    assert set(out.scores) == {"acc"} and out.scores["acc"].shape == (3,)
    again = editor.evaluate([5, 2])
    assert again.elapsed_s == 0.0 and torch.equal(again.outputs, out.outputs)
    assert torch.allclose(editor.intact.outputs, model(x))


def test_top_and_bottom_k():
    values = torch.tensor([[0.1, 0.0], [3.0, 1.0], [-2.0, 0.0], [0.5, 0.5]])  # totals 0.1, 4, -2, 1
    assert top_k(values, 2) == [1, 3]
    assert bottom_k(values, 2) == [2, 0]
    assert top_k(np.array([1.0, 2.0]), 10) == [1, 0]
    assert bottom_k([1.0], 0) == []


def test_masks_round_trip(tmp_path):
    labels = ["a:0", "a:1", "b:0"]
    text = mask_to_json(labels, [2, 0], model="m")
    assert '"lesioned"' in text and '"model": "m"' in text
    assert load_mask(text.encode()) == (labels, [0, 2])
    path = tmp_path / "mask.npz"
    path.write_bytes(mask_to_npz(labels, [1], model="m"))
    assert load_mask(path) == (labels, [1])
    with pytest.raises(ValueError, match="not a lesion mask"):
        load_mask(b"hello")


def test_pruned_mlp_equals_the_lesioned_model_and_loads_back(tmp_path):
    from msa_core.zoo import load_builtin

    model, data = load_builtin("mlp-digits")
    x = torch.from_numpy(data["x"][:50])
    game = lesion_game(model, "1", x)
    lesioned = [0, 7, 42]
    pruned = pruned_model(model, game.resolved, lesioned)
    expected = game(coalition(game.n_players, lesioned))[0]
    assert torch.allclose(pruned(x), expected, atol=1e-5)
    assert not torch.equal(model[0].weight, pruned[0].weight)  # the original is untouched
    path = save_pruned(pruned, tmp_path / "pruned.safetensors", metadata={"lesioned": lesioned})
    loaded = load_pruned(path)
    assert torch.allclose(loaded(x), pruned(x))
    assert torch.allclose(load_pruned(path, model)(x), pruned(x))
    assert len(pruned_bytes(pruned)) > 1000


def test_pruned_conv_block_and_experts_equal_the_lesion():
    from msa_core.zoo import load_builtin

    model, data = load_builtin("dcgan-digits")
    z = torch.from_numpy(data["z"][:4])
    for layer in ("net.0", "net.2"):
        game = lesion_game(model, layer, z)
        pruned = pruned_model(model, game.resolved, [1, 3])
        assert torch.allclose(pruned(z), game(coalition(game.n_players, [1, 3]))[0], atol=1e-5)

    class Routed(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.router(x), -1)

    routed = Routed().eval()
    x = torch.randn(5, 4)
    game = lesion_game(routed, UnitSpec("router", kind="expert", lesion="skip"), x)
    pruned = pruned_model(routed, game.resolved, [1])
    assert torch.allclose(pruned(x), game(coalition(3, [1]))[0])
    assert pruned(x)[:, 1].eq(0).all()


def test_pruning_refuses_what_it_cannot_write():
    model, x = _mlp()
    game = lesion_game(model, "1", x, lesion="mean")
    with pytest.raises(PruneError, match="mean"):
        pruned_model(model, game.resolved, [0])

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Softmax(-1)

        def forward(self, x):
            return self.scale(x)

    odd = Odd()
    game = lesion_game(odd, "scale", x)
    with pytest.raises(PruneError):
        pruned_model(odd, game.resolved, [0])


def test_scalarise_fidelity_runs_from_intact_to_empty():
    fidelity = scalarise(torch.stack([torch.ones(3), torch.zeros(3)]), torch.ones(3), torch.zeros(3), "fidelity")
    assert fidelity.tolist() == [1.0, 0.0]


def test_measure_throughput():
    model, x = _mlp()
    assert measure_throughput(lesion_game(model, "1", x), max_seconds=0.05) > 0


@pytest.mark.parametrize("name", ["mlp-digits", "dcgan-digits", "moe-lm"])
def test_editor_evaluation_time_per_builtin(name):
    """Measure (report, do not assert) the pure evaluation time of one click in the editor."""
    models = pytest.importorskip("msa_core.models")
    subject = models.load_subject(name)
    raw = next((n for n, f in subject.objectives.items() if f() is None), None)
    game = subject.game(objective=raw) if raw else lesion_game(subject.model, subject.resolve_units(None), subject.inputs)
    editor = LesionEditor(game)
    times = []
    for unit in range(min(5, editor.n_units)):
        started = time.perf_counter()
        editor.evaluate([unit])
        times.append(time.perf_counter() - started)
    print(f"\neditor evaluation {name}: median {np.median(times) * 1000:.1f} ms over {len(times)} clicks "
          f"({editor.n_units} units, torch threads {torch.get_num_threads()})")
