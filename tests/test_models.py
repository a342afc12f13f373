"""Model loading (msa_core.models): built-ins, recipes, TorchScript / torch.export files, bad input."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from msa_core import shapley_modes
from msa_core.models import ModelLoadError, Subject, list_builtins, load_subject
from msa_core.zoo import BUILTINS, assets_dir


@pytest.fixture(scope="module", autouse=True)
def assets(tmp_path_factory):
    """The real assets; where a built-in's weights are not trained yet, random weights in a copy (same format)."""
    real = assets_dir()
    if (real / "moe-lm.safetensors").is_file():
        yield real
        return
    from safetensors.torch import save_file

    from msa_core.zoo import MoELM

    folder = tmp_path_factory.mktemp("assets")
    for file in real.iterdir():
        if file.is_file():
            shutil.copy(file, folder / file.name)
    with np.load(real / "moe_lm_eval.npz") as data:
        vocab, length = len(data["vocab"]), data["tokens"].shape[1]
    torch.manual_seed(0)
    model = MoELM(vocab_size=vocab, max_len=length)
    save_file(model.state_dict(), str(folder / "moe-lm.safetensors"),
              metadata={"architecture": "MoELM", "config": json.dumps(model.config)})
    old = os.environ.get("MSA_ASSETS")
    os.environ["MSA_ASSETS"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("MSA_ASSETS", None)
    else:
        os.environ["MSA_ASSETS"] = old


@pytest.fixture(scope="module")
def builtin_subjects(assets):
    return {name: load_subject(name) for name in BUILTINS}


def test_list_builtins():
    names = [name for name, _ in list_builtins()]
    assert names == list(BUILTINS)
    assert all(isinstance(text, str) and text for _, text in list_builtins())


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_subject_fields_and_sampled_msa(builtin_subjects, name):
    subject = builtin_subjects[name]
    assert isinstance(subject, Subject) and subject.ref == name and not subject.model.training
    assert subject.default_objective in subject.objectives
    assert len(subject.fingerprint) == 64
    assert subject.layers and subject.default_units and subject.description
    assert subject.output_kind in ("image", "classes", "languages", "tokens", "vector")
    game = subject.game()
    result = shapley_modes(game, game.n_players, n_permutations=2, seed=0)
    assert result.values.shape == (game.n_players, *game.output_shape)
    assert torch.isfinite(result.values).all()
    full = game(torch.ones(1, game.n_players, dtype=torch.bool))[0]
    empty = game(torch.zeros(1, game.n_players, dtype=torch.bool))[0]
    # efficiency: the modes add up to v(full) - v(empty)
    assert torch.allclose(result.values.sum(0), (full - empty).to(result.values.dtype), atol=1e-6)


def test_fingerprint_is_stable_and_sensitive(builtin_subjects):
    again = load_subject("mlp-digits")
    assert again.fingerprint == builtin_subjects["mlp-digits"].fingerprint
    assert builtin_subjects["mlp-digits"].fingerprint != builtin_subjects["mlp-digits-l1"].fingerprint
    other_inputs = load_subject("mlp-digits", inputs=np.zeros((3, 64), np.float32))
    assert other_inputs.fingerprint != again.fingerprint


def test_mlp_objectives(builtin_subjects):
    subject = builtin_subjects["mlp-digits"]
    assert list(subject.objectives) == ["per-class accuracy", "class probability", "output"]
    assert subject.objective_labels("per-class accuracy") == [str(c) for c in range(10)]
    assert subject.samples["images"].shape == (16, 8, 8)
    game = subject.game()
    accuracy = game(torch.ones(1, 100, dtype=torch.bool))[0]
    assert accuracy.shape == (10,) and accuracy.mean() > 0.9  # a trained classifier
    probability = subject.game(objective="class probability")(torch.ones(1, 100, dtype=torch.bool))[0]
    assert torch.isclose(probability.sum(), torch.tensor(1.0, dtype=probability.dtype))
    assert subject.game(objective="output").output_shape == (500, 10)


def test_custom_inputs_for_a_builtin():
    subject = load_subject("mlp-digits", inputs=np.random.default_rng(0).random((7, 64)))
    assert subject.inputs.dtype == torch.float32 and subject.inputs.shape == (7, 64)
    assert "per-class accuracy" not in subject.objectives
    assert subject.game(objective="class probability").output_shape == (10,)


def test_dcgan_objectives_and_presets(builtin_subjects):
    subject = builtin_subjects["dcgan-digits"]
    assert subject.output_kind == "image" and subject.default_objective == "image"
    assert subject.unit_presets["one block"] == ["net.1"]
    assert subject.unit_presets["all blocks"] == ["net.0", "net.1", "net.2"]
    assert subject.game().output_shape == (32, 1, 32, 32)
    mean = subject.game(objective="mean image")
    assert mean.output_shape == (1, 32, 32) and mean.objective.additive
    channels = {layer.path: layer for layer in subject.layers}
    assert channels["net.1"].unit_kind == "channel" and channels["net.1"].n_units == 32
    assert subject.samples["images"].shape[1:] == (32, 32)


def test_moe_lm_games(builtin_subjects):
    subject = builtin_subjects["moe-lm"]
    assert subject.output_kind == "languages"
    languages = subject.objective_labels("per-language score")
    assert len(languages) >= 4
    game = subject.game()
    assert game.n_players == 8 and game.output_shape == (len(languages),)
    assert all(r.lesion == "skip" and r.kind == "expert" for r in game.resolved)
    none = game(torch.zeros(1, 8, dtype=torch.bool))
    assert torch.isfinite(none).all()
    one = game(torch.tensor([[False, True, True, True, True, True, True, True]]))
    full = game(torch.ones(1, 8, dtype=torch.bool))
    assert not torch.equal(one, full)  # skipping expert 0 of layer 0 changes the scores
    # router paths given as plain strings are still skipped, not zeroed
    assert subject.game(units=["blocks.1.moe.router"]).resolved[0].lesion == "skip"
    word = subject.samples["words"][0]
    tokens = subject.game(objective=f"token log-prob:{word}", units=subject.unit_presets["layer 0 experts"])
    assert tokens.n_inputs == 1 and tokens.output_shape == (len(word) + 1,)
    assert subject.objective_labels(f"token log-prob:{word}") == list(word) + ["<eos>"]
    assert subject.objective_kind("token log-prob") == "tokens"
    with pytest.raises(ModelLoadError, match="too long"):
        subject.game(objective="token log-prob:" + "a" * 50)


# ---------------------------------------------------------------------- recipes


RECIPE = """
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

def recipe():
    model = make_model()
    model.load_state_dict(torch.load(STATE, weights_only=True))
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    return {"model": model, "inputs": x, "labels": model(x).argmax(1), "default_units": "1",
            "objectives": {"sum": lambda outputs: outputs.sum(-1)}, "description": "tiny recipe"}

def pair():
    return make_model(), torch.randn(4, 6)

def broken():
    raise RuntimeError("the weights server is down")

def wrong():
    return 42
"""


@pytest.fixture()
def recipe_file(tmp_path):
    state = tmp_path / "state.pt"
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).state_dict(), state)
    file = tmp_path / "my_recipe.py"
    file.write_text(f"STATE = {str(state)!r}\n" + textwrap.dedent(RECIPE))
    return file


def test_recipe_file_loads_and_runs(recipe_file):
    subject = load_subject(f"{recipe_file}:recipe")
    assert subject.description == "tiny recipe" and subject.default_units == ["1"]
    assert set(subject.objectives) >= {"per-class accuracy", "class probability", "sum", "output"}
    game = subject.game()
    result = shapley_modes(game, game.n_players, method="exact")
    assert result.values.shape == (5, 3)
    assert subject.game(objective="sum").output_shape == (12,)


def test_recipe_module_ref(recipe_file, monkeypatch):
    monkeypatch.syspath_prepend(str(recipe_file.parent))
    sys.modules.pop("my_recipe", None)
    subject = load_subject("my_recipe:pair")
    assert subject.inputs.shape == (4, 6) and subject.default_objective == "output"


def test_recipe_errors(recipe_file):
    with pytest.raises(ModelLoadError, match="raised RuntimeError: the weights server is down"):
        load_subject(f"{recipe_file}:broken")
    with pytest.raises(ModelLoadError, match="must return"):
        load_subject(f"{recipe_file}:wrong")
    with pytest.raises(ModelLoadError, match="no function 'missing'"):
        load_subject(f"{recipe_file}:missing")
    with pytest.raises(ModelLoadError, match="cannot be imported"):
        load_subject("no_such_package_xyz.models:make")


# ---------------------------------------------------------------------- model files


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("files")
    model = _mlp()
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "inputs.npz", x=x.numpy(), y=model(x).argmax(1).numpy())
    torch.save(x, tmp_path / "inputs.pt")
    torch.jit.script(model).save(str(tmp_path / "scripted.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x)
    traced.save(str(tmp_path / "traced.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "static.pt2"))
    dynamic = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dynamic), str(tmp_path / "dynamic.pt2"))
    return tmp_path, model, x


@pytest.mark.parametrize("file", ["scripted.pt", "traced.pt", "static.pt2", "dynamic.pt2"])
def test_model_files_load_and_lesion(model_files, file):
    folder, model, x = model_files
    subject = load_subject(str(folder / file), inputs=str(folder / "inputs.npz"))
    assert "per-class accuracy" in subject.objectives
    assert subject.default_batch_size == (1 if file == "static.pt2" else None)
    game = subject.game(units="0", objective="output")
    with torch.no_grad():
        assert torch.allclose(game(torch.ones(1, 8, dtype=torch.bool))[0], model(x), atol=1e-6)
        lesioned = torch.ones(2, 8, dtype=torch.bool)
        lesioned[1, :4] = False
        hidden = model[0](x)
        hidden[:, :4] = 0
        expected = model[2](torch.relu(hidden))
        assert torch.allclose(game(lesioned)[1], expected, atol=1e-6)
    result = shapley_modes(subject.game(units="0"), 8, n_permutations=3)
    assert result.values.shape == (8, 3)


def test_torchscript_activation_taps_and_pt_inputs(model_files):
    folder, model, x = model_files
    subject = load_subject(str(folder / "scripted.pt"), inputs=str(folder / "inputs.pt"))
    paths = [layer.path for layer in subject.layers]
    assert "0" in paths and "2" in paths and any(p.startswith("ops.relu") for p in paths)
    assert subject.default_objective == "output"


def test_exported_program_uses_saved_example_inputs(model_files):
    folder, _, x = model_files
    subject = load_subject(str(folder / "dynamic.pt2"))
    assert torch.equal(subject.inputs, x)


# ---------------------------------------------------------------------- bad input


def test_missing_file():
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_subject("/nonexistent/model.pt2")


def test_unknown_builtin_lists_names():
    with pytest.raises(ModelLoadError, match="mlp-digits, mlp-digits-l1") as info:
        load_subject("mlp-digitz")
    assert "unknown model 'mlp-digitz'" in str(info.value)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(ModelLoadError, match="refused to load .*arbitrary code"):
        load_subject(str(path), inputs=np.zeros((2, 2), np.float32))


def test_state_dict_is_not_a_model(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ModelLoadError, match="tensors only .*recipe"):
        load_subject(str(path))


def test_missing_layer_path(builtin_subjects):
    with pytest.raises(ModelLoadError, match="no layer 'net.9'.*Did you mean"):
        builtin_subjects["dcgan-digits"].game(units="net.9")


def test_inputs_the_model_rejects(model_files):
    folder, _, _ = model_files
    with pytest.raises(ModelLoadError, match=r"rejected the example inputs \(a \(3, 5\) float32 tensor\)"):
        load_subject(str(folder / "dynamic.pt2"), inputs=torch.randn(3, 5))
    with pytest.raises(ModelLoadError, match="rejected the example inputs"):
        load_subject("mlp-digits", inputs=np.zeros((3, 7), np.float32))
    # TorchScript: the scripted module's own complaint, in one line, not the converter's graph trace
    with pytest.raises(ModelLoadError, match=r"TorchScript model .* rejected the example inputs \(a \(4, 7\)") as caught:
        load_subject(str(folder / "scripted.pt"), inputs=torch.randn(4, 7))
    assert "While executing" not in str(caught.value)


def test_torchscript_needs_inputs(model_files):
    folder, _, _ = model_files
    with pytest.raises(ModelLoadError, match="needs example inputs"):
        load_subject(str(folder / "scripted.pt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_absent_device():
    with pytest.raises(ModelLoadError, match="no CUDA GPU is available"):
        load_subject("mlp-digits", device="cuda")


def test_unknown_objective(builtin_subjects):
    with pytest.raises(ModelLoadError, match="no objective 'accuracy'.*per-class accuracy"):
        builtin_subjects["mlp-digits"].game(objective="accuracy")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_subject(str(tmp_path))


# ---------------------------------------------------------------------- torchvision (optional)


def _torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a CUDA build on a CPU machine fails with more than ImportError
        return False
    return True


@pytest.mark.skipif(not _torchvision_works(), reason="torchvision cannot be imported here")
def test_torchvision_architecture(tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    subject = load_subject(f"torchvision:resnet18:{weights}", inputs=np.zeros((2, 3, 64, 64), np.float32))
    game = subject.game(units="layer4")
    assert game.n_players == 512


@pytest.mark.skipif(_torchvision_works(), reason="torchvision imports here")
def test_torchvision_missing_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="needs torchvision"):
        load_subject("torchvision:resnet18:/tmp/weights.pth")
