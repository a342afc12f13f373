"""The paper's 128x128 RGB DCGAN generator architecture (Dixit et al.), to be used with a user's weights.

``PaperDCGANGenerator``: latent ``(B, 100)`` -> image ``(B, 3, 128, 128)`` in [-1, 1], five hidden
ConvTranspose2d + BatchNorm2d + ReLU blocks with 1024, 512, 256, 128 and 64 channels at 4x4, 8x8, 16x16,
32x32 and 64x64 (``net.0`` .. ``net.4``; 1,984 channels, 1,987 with the 3 output channels of ``net.5``,
ConvTranspose2d + Tanh). No weights ship with MSA Explorer: load yours with :func:`paper_dcgan_generator`
(``.safetensors``, or a ``.pt``/``.pth`` state dict read with ``weights_only=True``), or pass ``seed`` for
seeded random weights (benchmarks only). In the app and the CLI, open the recipe
``msa_core.zoo.paper_gan:paper_gan`` with ``MSA_PAPER_GAN_WEIGHTS=/path/to/generator.safetensors`` set (the
channel counts are read from the weights; :func:`paper_gan`), or write a recipe file, e.g.::

    # my_gan.py, loaded as "my_gan.py:recipe"
    import torch
    from msa_core.zoo.paper_gan import paper_dcgan_generator

    def recipe():
        model = paper_dcgan_generator("generator.pth")
        return {"model": model, "inputs": torch.randn(8, 100, generator=torch.Generator().manual_seed(0)),
                "default_units": ["net.2"]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

__all__ = ["PaperDCGANGenerator", "paper_dcgan_generator", "paper_gan", "read_state", "infer_config", "PAPER_CHANNELS",
           "PAPER_NZ", "HIDDEN_BLOCKS", "WEIGHTS_ENV", "LATENTS_ENV", "RECIPE", "weights_problem"]

PAPER_NZ = 100
PAPER_CHANNELS = (1024, 512, 256, 128, 64)
HIDDEN_BLOCKS = tuple(f"net.{i}" for i in range(len(PAPER_CHANNELS)))
"""Module paths of the hidden blocks (the lesionable layers), ``("net.0", ..., "net.4")``."""


def _block(c_in: int, c_out: int, first: bool) -> nn.Sequential:
    # bias=False: BatchNorm's shift makes a conv bias redundant (the DCGAN paper's convention).
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 1, 0, bias=False) if first else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


class PaperDCGANGenerator(nn.Module):
    """DCGAN generator: latent ``(B, nz)`` (or ``(B, nz, 1, 1)``) -> ``(B, out_channels, 4 * 2**k, ...)`` in [-1, 1].

    With the defaults (the paper's), ``k = 5`` hidden blocks and the output is ``(B, 3, 128, 128)``.
    ``net.i`` (i < k) outputs ``(B, channels[i], 4 * 2**i, 4 * 2**i)``; ``net.k`` is ConvTranspose2d + Tanh.
    """

    def __init__(self, nz: int = PAPER_NZ, channels: Sequence[int] = PAPER_CHANNELS, out_channels: int = 3):
        super().__init__()
        widths = [int(c) for c in channels]
        if not widths or min(widths) < 1 or nz < 1 or out_channels < 1:
            raise ValueError(f"nz, channels and out_channels must be positive; got {nz}, {widths}, {out_channels}")
        blocks = [_block(nz, widths[0], True)]
        blocks += [_block(a, b, False) for a, b in zip(widths[:-1], widths[1:])]
        blocks.append(nn.Sequential(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1), nn.Tanh()))
        self.nz = int(nz)
        self.net = nn.Sequential(*blocks)
        self.config = {"nz": int(nz), "channels": widths, "out_channels": int(out_channels)}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: ``(B, nz)`` or ``(B, nz, 1, 1)`` -> images ``(B, out_channels, H, W)`` in [-1, 1]."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.net(z)


def _init_dcgan(module: nn.Module) -> None:
    # DCGAN init: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales; BN running stats stay (0, 1).
    if isinstance(module, nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def paper_dcgan_generator(
    weights: str | Path | None = None, *, seed: int | None = None, device: str | torch.device = "cpu", **config
) -> PaperDCGANGenerator:
    """The paper's generator in eval mode, with the user's ``weights`` or seeded random ones.

    Args:
        weights: a ``.safetensors`` file or a ``.pt``/``.pth`` state dict (read with ``weights_only=True``;
            a ``{"state_dict": ...}`` wrapper is unwrapped). Keys must match ``PaperDCGANGenerator``'s
            (``net.0.0.weight``, ``net.0.1.running_mean``, ...).
        seed: without ``weights``: seed of a DCGAN-style random initialisation (for benchmarks; never a
            built-in model). One of ``weights`` and ``seed`` is required.
        device: where the model goes.
        **config: ``nz``, ``channels``, ``out_channels`` (default: the paper's 100, (1024, ..., 64), 3).

    Raises:
        ValueError: neither or both of ``weights`` and ``seed``, or keys that do not match (one line).
        FileNotFoundError: a missing weights file.
    """
    if (weights is None) == (seed is None):
        raise ValueError("give either weights (a .safetensors or .pt state-dict file) or seed (random weights)")
    if weights is None:
        torch.manual_seed(int(seed))
        model = PaperDCGANGenerator(**config)
        model.apply(_init_dcgan)
        return model.to(device).eval()
    path = Path(weights).expanduser()
    state = read_state(path)
    model = PaperDCGANGenerator(**config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"{path.name} does not hold PaperDCGANGenerator weights: {first}") from None
    return model.to(device).eval()


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors``, or a ``.pt``/``.pth`` state dict read with
    ``weights_only=True`` (a ``{"state_dict": ...}`` wrapper unwrapped). FileNotFoundError when missing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def infer_config(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """``nz``, ``channels`` and ``out_channels`` of the generator whose state dict is ``state``, read from
    the transposed convolutions' weight shapes ``(c_in, c_out, 4, 4)`` (``net.i.0.weight``); a one-line
    ValueError for a state dict of another model."""
    shapes = []
    while f"net.{len(shapes)}.0.weight" in state:
        shapes.append(tuple(state[f"net.{len(shapes)}.0.weight"].shape))
    if len(shapes) < 2 or any(len(shape) != 4 for shape in shapes):
        raise ValueError("these weights are not a PaperDCGANGenerator's (no net.0.0.weight, net.1.0.weight, ... "
                         "of shape (c_in, c_out, 4, 4))")
    return {"nz": shapes[0][0], "channels": [shape[1] for shape in shapes[:-1]], "out_channels": shapes[-1][1]}


WEIGHTS_ENV = "MSA_PAPER_GAN_WEIGHTS"
"""Environment variable with the path of the user's generator weights, read by :func:`paper_gan`."""
LATENTS_ENV = "MSA_PAPER_GAN_LATENTS"
"""Environment variable with the number of fixed latents of :func:`paper_gan` (default 8; the paper used 32)."""


RECIPE = "msa_core.zoo.paper_gan:paper_gan"
"""The model reference of :func:`paper_gan` (the app lists it on the Model page)."""


def weights_problem(environ: "dict[str, str] | None" = None) -> str | None:
    """Why :func:`paper_gan` cannot open here (one line), or None when ``$MSA_PAPER_GAN_WEIGHTS`` names a file.

    Only the path is checked (the file is read when the recipe runs); ``environ`` defaults to ``os.environ``.
    """
    import os

    weights = (os.environ if environ is None else environ).get(WEIGHTS_ENV, "").strip()
    if not weights:
        return f"{WEIGHTS_ENV} is not set on this server (no weights ship with MSA Explorer)"
    if not Path(weights).expanduser().is_file():
        return f"{WEIGHTS_ENV} names {weights!r}, which is not a file on this server"
    return None


def paper_gan(device: str = "cpu") -> dict[str, object]:
    """Recipe ``msa_core.zoo.paper_gan:paper_gan``: the paper's generator with the weights at ``$MSA_PAPER_GAN_WEIGHTS``.

    The architecture (``nz``, channel counts) is read from the weights' shapes (:func:`infer_config`), so a
    reduced-width generator of the same shape loads too. Inputs: ``$MSA_PAPER_GAN_LATENTS`` (default 8) fixed
    latents ``(n, nz)`` drawn with seed 0 (pass your own inputs file to replace them). Unit presets: the hidden
    channels of every block (1,984 for the paper's widths) and all channels with the output's 3 (1,987: the
    paper's game); one block (``net.2``) by default. The app may open this recipe (it takes nothing from a
    browser; the operator sets the environment variables), see :mod:`msa_core.models.policy`.

    Returns:
        A recipe dict (``model``, ``inputs``, ``default_units``, ``unit_presets``, ``output_kind``, ...).
    """
    import os

    weights = os.environ.get(WEIGHTS_ENV, "").strip()
    if not weights:
        raise ValueError(f"set {WEIGHTS_ENV}=/path/to/generator.safetensors (or .pth): no weights ship with "
                         "MSA Explorer for the paper's generator")
    try:
        n_latents = int(os.environ.get(LATENTS_ENV, "8"))
    except ValueError:
        raise ValueError(f"{LATENTS_ENV} must be a whole number of latents") from None
    if n_latents < 1:
        raise ValueError(f"{LATENTS_ENV} must be at least 1")
    config = infer_config(read_state(weights))
    model = paper_dcgan_generator(weights, device=device, **config)
    latents = torch.randn(n_latents, int(config["nz"]), generator=torch.Generator().manual_seed(0))
    hidden = [f"net.{i}" for i in range(len(config["channels"]))]
    n_hidden = sum(config["channels"])
    with torch.no_grad():  # the Model page's sample images: the first latents' generated images (k, 3, H, W)
        images = model(latents[:4].to(next(model.parameters()).device)).cpu().numpy()
    return {
        "samples": {"images": images},
        "model": model, "inputs": latents, "default_units": [hidden[len(hidden) // 2]],
        "unit_presets": {f"hidden channels ({n_hidden:,})": hidden,
                         f"all channels ({n_hidden + int(config['out_channels']):,}, output included)":
                             hidden + [f"net.{len(hidden)}"]},
        "output_kind": "image", "name": "paper DCGAN generator",
        "description": (f"The paper's 128x128 RGB DCGAN generator architecture ({', '.join(map(str, config['channels']))} "
                        f"hidden channels, {config['nz']}-d latent) with the weights in {Path(weights).name}, "
                        f"{n_latents} fixed latents."),
    }
