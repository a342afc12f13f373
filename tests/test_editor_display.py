"""What the editor draws (issue 13): the grid's colour scale from the units shown, robust to a few units with
huge totals, and the value range of image outputs (a Tanh generator on [-1, 1], in colour)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from msa_core import live_views as live
from msa_core.editor_display import colour_scale, grid_figure, image_range


def test_colour_scale_is_set_by_the_hidden_layers_not_three_huge_output_channels():
    # the paper generator's shape: hidden layers with totals within ±10 and ±40, 3 output channels at ~±2,000
    hidden_a = np.linspace(-10.0, 10.0, 64)
    hidden_b = np.linspace(-40.0, 40.0, 32)
    output = np.array([2000.0, -1900.0, 2100.0])
    totals = np.concatenate([hidden_a, hidden_b, output])
    labels = [f"net.0:{i}" for i in range(64)] + [f"net.1:{i}" for i in range(32)] + [f"net.5:{i}" for i in range(3)]
    scale = colour_scale(totals, labels)
    assert scale.layers == ("net.1",)  # the widest hidden layer sets it, the output channels do not
    assert scale.limit == 40.0  # net.1's 99th percentile of |total| (the "lower" one): its two ends are both 40
    assert scale.n_clipped == 3  # the output channels only
    assert scale.title == "Shapley value<br>(unit total)<br>3 beyond ±40"
    assert scale.caption == ("Colour scale ±40 (set by layer net.1): 3 units lie beyond it and take the end colour; "
                             "hover a cell for its value.")
    # the old scale (the largest |total| shown) put every hidden cell within 2% of white
    assert np.abs(totals).max() / scale.limit > 50

    figure, same = grid_figure(totals, [2], list(range(99)), labels)
    marker = figure["data"][0]["marker"]
    assert same == scale and marker["cmax"] == scale.limit and marker["cmin"] == -scale.limit
    assert marker["colorbar"]["title"]["text"] == scale.title
    assert marker["color"][-1] == 2100.0  # the true value stays on the cell (hover), only the colour saturates

    # one layer shown (a layer view): that layer's own scale, nothing clipped but its own tail
    only_a = colour_scale(hidden_a, labels[:64])
    assert only_a.limit == 10.0 and only_a.layers == ("net.0",) and only_a.n_clipped == 0
    assert only_a.title == "Shapley value<br>(unit total)" and only_a.caption == ""
    big = colour_scale(np.r_[np.linspace(-4070, 4070, 16), 9e4], [f"a:{i}" for i in range(17)])
    assert big.limit == 4070.0 and big.title.endswith("1 beyond ±4,070") and "1 unit lies beyond" in big.caption
    # few units of several small layers: no layer qualifies, so the quantile of all of them
    few = colour_scale([1.0, -2.0, 4.0], ["a:0", "b:0", "c:0"])
    assert few.layers == () and few.limit == 2.0 and few.n_clipped == 1  # the "lower" 99th percentile of 1, 2, 4
    assert colour_scale(np.zeros(5), [f"a:{i}" for i in range(5)]).limit == 1.0  # no run: a unit scale
    with pytest.raises(ValueError):
        colour_scale([1.0, 2.0], ["a:0"])


def test_image_range_is_the_tanh_bounds_and_draws_the_edited_image_on_the_intact_scale():
    import io

    from PIL import Image

    from msa_core.zoo.paper_gan import paper_dcgan_generator

    generator = paper_dcgan_generator(seed=2, channels=(8, 8, 4, 4, 4))
    latents = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        intact = generator(latents)
    assert image_range(generator, intact) == (-1.0, 1.0)  # its last module is the Tanh
    # a lesion of the blue output channel: drawn in colour on [-1, 1], red and green stay, blue turns mid-level
    edited = intact.clone()
    edited[:, 2] = 0
    png, limit = live.image_comparison_png(intact, edited, n_show=2, scale=1, gap=1,
                                           value_range=image_range(generator, intact))
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    for row, image in ((0, intact), (1, edited)):
        expected = np.round(np.clip((image[0].double().numpy().transpose(1, 2, 0) + 1) / 2, 0, 1) * 255)
        assert (pixels[row * 129:row * 129 + 128, :128] == expected).all()
    assert (pixels[129:129 + 128, :128, 2] == 128).all()  # blue at 0: the middle of [-1, 1]
    assert limit == pytest.approx(float(intact[:2, 2].abs().max()))
    shift = pixels[2 * 129:, :128]  # the difference row: red and green unchanged (mid-grey), blue shifted
    assert (shift[..., :2] == 128).all() and (shift[..., 2] != 128).any()
    # no bounded last activation: the intact output's own range, whatever the edited one's
    linear = nn.Sequential(nn.Linear(2, 2))
    assert image_range(linear, torch.tensor([[0.5, 3.0]])) == (0.5, 3.0)
    assert image_range(None, torch.full((1, 4, 4), 2.0)) == (2.0, 3.0)  # a constant image
    assert image_range(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), torch.tensor([0.2, 0.9])) == (0.0, 1.0)
    assert image_range(nn.Sequential(nn.Linear(2, 2), nn.ReLU6()), torch.tensor([0.2, 0.9])) == (0.0, 6.0)
    assert image_range(nn.Hardtanh(-2.0, 2.0), torch.tensor([-1.5, 0.9])) == (-2.0, 2.0)
    # outputs outside the activation's bounds (another module after it at run time): their own range
    assert image_range(nn.Sequential(nn.Tanh()), torch.tensor([-3.0, 2.0])) == (-3.0, 2.0)
