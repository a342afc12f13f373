"""The paper's 128x128 RGB DCGAN generator architecture: shapes, channel counts, loading a user's weights."""

from __future__ import annotations

import pytest
import torch

from msa_core.zoo import ARCHITECTURES, load_weights
from msa_core.zoo.paper_gan import HIDDEN_BLOCKS, PaperDCGANGenerator, paper_dcgan_generator


@pytest.fixture(scope="module")
def generator():
    return paper_dcgan_generator(seed=0)


def test_paper_generator_shapes_and_channels(generator):
    modules = dict(generator.named_modules())
    shapes = {}
    hooks = [modules[p].register_forward_hook(lambda m, i, o, p=p: shapes.__setitem__(p, tuple(o.shape))) for p in HIDDEN_BLOCKS]
    try:
        with torch.no_grad():
            image = generator(torch.randn(2, 100, generator=torch.Generator().manual_seed(1)))
    finally:
        for hook in hooks:
            hook.remove()
    assert image.shape == (2, 3, 128, 128)
    assert image.min() >= -1 and image.max() <= 1
    assert [shapes[p] for p in HIDDEN_BLOCKS] == [(2, 1024, 4, 4), (2, 512, 8, 8), (2, 256, 16, 16), (2, 128, 32, 32), (2, 64, 64, 64)]
    assert sum(s[1] for s in shapes.values()) + 3 == 1987  # the paper's 1,987 channels
    assert not generator.training


def test_seeded_random_weights_are_reproducible_and_no_builtin_ships_them(generator):
    again = paper_dcgan_generator(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(), again.state_dict().values()))
    from msa_core.zoo import BUILTINS

    assert not any("128" in name or "paper" in name for name in BUILTINS)


def test_user_weights_load_from_safetensors_and_state_dict(tmp_path):
    from safetensors.torch import save_file

    small = PaperDCGANGenerator(nz=8, channels=(16, 8), out_channels=3)  # same code path, tiny
    state = {k: v.contiguous() for k, v in small.state_dict().items()}
    save_file(state, str(tmp_path / "g.safetensors"),
              metadata={"architecture": "PaperDCGANGenerator", "config": '{"nz": 8, "channels": [16, 8], "out_channels": 3}'})
    torch.save({"state_dict": state}, tmp_path / "g.pth")
    z = torch.randn(3, 8)
    with torch.no_grad():
        expected = small.eval()(z)
        for model in (
            paper_dcgan_generator(tmp_path / "g.safetensors", nz=8, channels=(16, 8)),
            paper_dcgan_generator(tmp_path / "g.pth", nz=8, channels=(16, 8)),
            load_weights(tmp_path / "g.safetensors"),
        ):
            assert torch.equal(model(z), expected) and model(z).shape == (3, 3, 16, 16)
    assert ARCHITECTURES["PaperDCGANGenerator"] is PaperDCGANGenerator
    with pytest.raises(ValueError, match="does not hold PaperDCGANGenerator weights"):
        paper_dcgan_generator(tmp_path / "g.pth")  # the paper's shape against tiny weights
    with pytest.raises(ValueError, match="either weights"):
        paper_dcgan_generator()
    with pytest.raises(FileNotFoundError):
        paper_dcgan_generator(tmp_path / "missing.pth")
