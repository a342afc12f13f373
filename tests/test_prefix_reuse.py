"""Prefix reuse: for every decoder family, a game whose players sit at layer L or later gives the same values
as the full forward pass (float32, 1e-5), on padded task-battery inputs and on the default inputs."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from msa_core.models import load_subject  # noqa: E402
from msa_core.models.prefix import decoder_layout, prefix_lesion_game  # noqa: E402
from tests.lm_fixtures import FAMILIES, save_model  # noqa: E402

BATTERY = {"tasks": [
    {"name": "sum", "score": "accuracy", "items": [{"prompt": "2 + 3 =", "answer": " 5"},
                                                   {"prompt": "The capital of France is", "answer": " Paris"}]},
    {"name": "fox", "score": "logprob", "items": [{"prompt": "The quick brown fox jumps over", "answer": " the lazy dog."}]},
]}


@pytest.fixture(scope="module", params=FAMILIES)
def subject(request, tmp_path_factory):
    folder = save_model(tmp_path_factory.mktemp(request.param), request.param)
    return load_subject(str(folder), tasks=BATTERY)


def _later_units(subject):
    """Heads of layer 1 and the last layer's neurons (dense) or experts (MoE, with a shared expert if any)."""
    last = subject.unit_presets.get("layer 2 experts") or subject.unit_presets["layer 2 neurons"]
    return last, subject.unit_presets["layer 1 heads"] + last


def test_prefix_reuse_gives_the_full_pass_values(subject):
    coalitions = torch.rand((6, 256), generator=torch.Generator().manual_seed(1)) > 0.5
    last, both = _later_units(subject)
    for objective, units in (("tasks", both), ("token log-prob", last)):
        reused = subject.game(units=units, objective=objective)
        full = subject.game(units=units, objective=objective, prefix_reuse=False)
        assert reused.path.startswith("prefix") and full.path == "hooks"
        rows = torch.cat([torch.ones((1, full.n_players), dtype=torch.bool),
                          torch.zeros((1, full.n_players), dtype=torch.bool), coalitions[:, : full.n_players]])
        expected = full(rows)
        assert torch.allclose(reused(rows), expected, atol=1e-5, rtol=0)
        assert not torch.allclose(expected[0], expected[1])  # the players matter


def test_prefix_starts_at_the_first_layer_holding_a_player(subject):
    game = subject.game(units=subject.unit_presets["layer 2 heads"] + subject.unit_presets["layer 1 heads"])
    assert game.prefix_start == 1 and game.path == "prefix (layers 1..2)"
    assert subject.game(units=subject.unit_presets["layer 0 heads"]).path == "hooks"  # nothing to reuse
    subject.prefix_reuse = False
    try:
        assert subject.game(units=subject.unit_presets["layer 2 heads"]).path == "hooks"
    finally:
        subject.prefix_reuse = True


def test_lesion_game_on_the_raw_model(subject):
    layout = decoder_layout(subject.model)
    assert layout is not None and layout.n_layers == 3
    spec = subject.resolve_units(subject.unit_presets["layer 2 heads"])
    objective = subject.objective("token log-prob")
    on = prefix_lesion_game(subject.model, spec, subject.inputs, objective=objective)
    off = prefix_lesion_game(subject.model, spec, subject.inputs, objective=objective, prefix_reuse=False)
    assert on.path.startswith("prefix") and off.path == "hooks"
    rows = torch.tensor([[True, False, True, False], [False, True, True, True]])
    assert torch.allclose(on(rows), off(rows), atol=1e-5, rtol=0)


def test_mean_and_callable_lesions_keep_their_values(subject):
    units = subject.unit_presets["layer 2 heads"]
    rows = torch.tensor([[True, False, True, False], [False, False, False, True]])
    for lesion in ("mean", lambda activation: 0.5 * activation):
        reused = subject.game(units=units, objective="tasks", lesion=lesion)
        full = subject.game(units=units, objective="tasks", lesion=lesion, prefix_reuse=False)
        assert reused.path.startswith("prefix") and reused.full_model is subject.model
        assert torch.allclose(reused(rows), full(rows), atol=1e-5, rtol=0)
