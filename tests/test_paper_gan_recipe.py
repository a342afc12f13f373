"""The paper's generator as a subject (issue 13): the recipe ``msa_core.zoo.paper_gan:paper_gan`` opens the
user's weights (widths read from them), the app may open it, and no other function of the module."""

from __future__ import annotations

import pytest
import torch

from msa_core.models import ModelLoadError, load_subject
from msa_core.models.policy import RecipeRefused
from msa_core.zoo.paper_gan import infer_config, paper_dcgan_generator, read_state

REF = "msa_core.zoo.paper_gan:paper_gan"


def test_the_recipe_loads_the_users_weights_with_presets(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    generator = paper_dcgan_generator(seed=5, nz=16, channels=(24, 12, 8, 6, 4))
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(tmp_path / "g.safetensors"))
    torch.save(generator.state_dict(), tmp_path / "g.pth")
    assert infer_config(read_state(tmp_path / "g.pth")) == {"nz": 16, "channels": [24, 12, 8, 6, 4], "out_channels": 3}
    monkeypatch.setenv("MSA_PAPER_GAN_LATENTS", "2")
    for name in ("g.safetensors", "g.pth"):
        monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(tmp_path / name))
        subject = load_subject(REF, trusted=False)  # a browser user may open it: it runs nothing of theirs
        assert subject.inputs.shape == (2, 16) and subject.output_kind == "image"
        with torch.no_grad():
            assert torch.equal(subject.model(subject.inputs), generator(subject.inputs))  # the user's weights
            # the Model page's samples are the generated images of the first latents, colour channels kept
            assert torch.equal(torch.from_numpy(subject.samples["images"]), generator(subject.inputs[:4]))
        assert subject.default_units == ["net.2"]
        assert subject.unit_presets == {"hidden channels (54)": [f"net.{i}" for i in range(5)],
                                        "all channels (57, output included)": [f"net.{i}" for i in range(6)]}
        game = subject.game(units=subject.resolve_units("all channels (57, output included)"))
        assert game.n_players == 57 and game(torch.ones(1, 57, dtype=torch.bool)).shape == (1, 2, 3, 128, 128)


def test_missing_weights_and_other_functions_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MSA_PAPER_GAN_WEIGHTS", raising=False)
    with pytest.raises(ModelLoadError, match="MSA_PAPER_GAN_WEIGHTS"):
        load_subject(REF, trusted=False)
    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_subject(REF, trusted=False)
    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(tmp_path / "other.pth"))
    with pytest.raises(ModelLoadError, match="not a PaperDCGANGenerator"):
        load_subject(REF, trusted=False)
    with pytest.raises(RecipeRefused):  # only the recipe itself is allowed, not any function of the module
        load_subject("msa_core.zoo.paper_gan:paper_dcgan_generator", trusted=False)
