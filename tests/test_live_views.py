"""msa_core.live_views: the editor's grid, bars and image strip, checked against what they must show."""

from __future__ import annotations

import io
import json

import numpy as np
import plotly.graph_objects as go
import plotly.tools
import pytest
import torch
from PIL import Image

from msa_core import live_views as L


def test_all_names_exist():
    assert all(hasattr(L, name) for name in L.__all__)


def test_unit_grid_is_a_valid_plotly_scatter_with_one_point_per_unit():
    values = np.array([0.5, -0.2, 0.0, 1.0, 0.3])
    spec = L.unit_grid_figure(values, [1, 3], unit_labels=list("abcde"), n_cols=2)
    json.dumps(spec)  # plain JSON: no numpy scalars or arrays left in it
    figure = plotly.tools.return_figure_from_figure_or_data(spec, validate_figure=True)  # what Streamlit does
    trace = go.Figure(figure).data[0]
    # the units are the first trace; two point-less traces after it are the legend (intact, lesioned)
    legend = go.Figure(figure).data[1:]
    assert [t.name for t in legend] == ["intact unit", "lesioned unit (click to restore)"]
    assert [t.marker.symbol for t in legend] == ["square", "square-x"] and all(t.x == (None,) for t in legend)
    assert figure["layout"]["showlegend"] and trace.showlegend is False
    assert "unit %{text}" in trace.hovertemplate  # the unit's name on hover
    assert list(trace.customdata) == [0, 1, 2, 3, 4]
    assert list(trace.x) == [0, 1, 0, 1, 0] and list(trace.y) == [0, 0, 1, 1, 2]  # row-major, 2 columns
    assert list(trace.text) == list("abcde")
    assert list(trace.marker.color) == pytest.approx(values.tolist())
    assert trace.marker.cmin == -1.0 and trace.marker.cmax == 1.0  # symmetric about 0
    assert [s for s in trace.marker.symbol] == ["square", "square-x", "square", "square-x", "square"]
    assert list(trace.marker.line.color) == ["white", "black", "white", "black", "white"]


def test_unit_grid_colours_a_mode_by_its_sum_and_draws_no_scale_without_values():
    modes = np.array([[1.0, -3.0], [0.5, 0.5]])
    trace = L.unit_grid_figure(modes)["data"][0]
    assert trace["marker"]["color"] == [-2.0, 1.0]
    assert trace["marker"]["showscale"] is True
    blank = L.unit_grid_figure(np.zeros(4))["data"][0]
    assert blank["marker"]["showscale"] is False
    assert blank["marker"]["cmax"] > 0  # no zero-width colour range
    with pytest.raises(ValueError, match="labels"):
        L.unit_grid_figure(np.zeros(3), unit_labels=["a"])


def test_score_and_token_options_hold_both_series():
    option = L.score_comparison_option(torch.tensor([0.9, 0.8]), torch.tensor([0.5, 0.7]), labels=["en", "de"],
                                       title="per-language", y_title="nats")
    json.dumps(option)
    assert option["xAxis"]["data"] == ["en", "de"]
    assert [s["name"] for s in option["series"]] == ["intact", "edited"]
    assert option["series"][0]["data"] == pytest.approx([0.9, 0.8]) and option["series"][1]["data"] == pytest.approx([0.5, 0.7])
    fallback = L.score_comparison_option([1, 2, 3], [1, 2, 3], labels=["only one"])
    assert fallback["xAxis"]["data"] == ["0", "1", "2"]
    tokens = L.token_probability_option(list("ab"), [0.5, 0.2], [0.4, 0.1])
    assert tokens["xAxis"]["data"] == ["0:a", "1:b"] and tokens["yAxis"]["max"] == 1.0
    assert tokens["xAxis"]["name"] == "position:token"
    repeated = L.score_comparison_option([1, 2], [1, 2], labels=["l", "l"], x_title="class")
    assert repeated["xAxis"]["data"] == ["0:l", "1:l"] and repeated["xAxis"]["name"] == "class"


def test_diverging_colours_are_blue_white_red():
    rgb = L.diverging_rgb(np.array([-1.0, 0.0, 1.0, 5.0]), 1.0)
    assert rgb[0].tolist() == [0x21, 0x66, 0xAC]
    assert rgb[1].tolist() == [0xF7, 0xF7, 0xF7]
    assert rgb[2].tolist() == rgb[3].tolist() == [0xB2, 0x18, 0x2B]  # clipped at the limit


def test_image_strip_shows_intact_edited_and_difference_pixel_for_pixel():
    intact = torch.zeros(3, 1, 2, 2)
    edited = intact.clone()
    edited[1, 0, 0, 1] = 1.0  # one pixel of the second image turns white
    png, limit = L.image_comparison_png(intact, edited, n_show=2, scale=3, gap=1)
    assert limit == 1.0
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (3 * 6 + 2, 2 * 6 + 1, 3)  # 3 rows x 2 images of 2x2 pixels drawn 3x3, gaps of 1
    second_column = 6 + 1
    assert (image[0:6, :6] == 0).all()  # intact: all black (the grey range is 0..1)
    assert (image[7:10, second_column + 3:second_column + 6] == 255).all()  # edited: the white pixel
    assert (image[7:10, second_column:second_column + 3] == 0).all()
    diff = image[14:20, second_column:]
    assert diff[0, 3].tolist() == [0xB2, 0x18, 0x2B]  # +1 difference: red
    assert diff[0, 0].tolist() == [0xF7, 0xF7, 0xF7]  # no difference: white
    assert (image[6, :] == 255).all()  # the gap between rows


def test_an_rgb_output_is_drawn_in_colour_with_its_difference_as_a_colour_shift():
    intact = torch.zeros(2, 3, 4, 4)
    intact[0, :, 0, 0] = torch.tensor([-1.0, 0.0, 1.0])
    intact[0, :, 1, 2] = torch.tensor([0.5, -0.5, 2.0])  # 2.0 lies beyond the range: clipped to white
    edited = intact.clone()
    edited[1, 0, 2, 3] += 0.75  # the second image: one pixel's red rises, its blue falls (exact binary fractions)
    edited[1, 2, 2, 3] -= 0.375
    png, limit = L.image_comparison_png(intact, edited, n_show=2, scale=1, gap=1, value_range=(-1.0, 1.0))
    assert limit == 0.75
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (3 * 4 + 2, 2 * 4 + 1, 3)
    intact_row, edited_row, shift_row = image[0:4], image[5:9], image[10:14]
    assert intact_row[0, 0].tolist() == [0, 128, 255]  # -1, 0, 1 on [-1, 1]
    assert intact_row[1, 2].tolist() == [191, 64, 255]  # 0.5 -> 191.25, -0.5 -> 63.75, 2.0 clipped
    assert intact_row[3, 3].tolist() == [128, 128, 128]  # 0 in every channel: mid-grey
    second = 4 + 1
    assert edited_row[2, second + 3].tolist() == [223, 128, 80]  # 0.75 -> 223.125, 0 -> 127.5, -0.375 -> 79.69
    assert (edited_row[:, :4] == intact_row[:, :4]).all()  # the first image is unchanged
    # each channel's signed difference over ±limit around mid-grey: red +0.75 -> 255, blue -0.375 -> 63.75
    assert shift_row[2, second + 3].tolist() == [255, 128, 64]
    assert (shift_row[:, :4] == 128).all() and (shift_row[0, second:] == 128).all()  # no change: mid-grey
    assert (image[4] == 255).all() and (image[:, 4] == 255).all()  # the gaps stay white
    pixels = L.image_pixels(intact, (-1.0, 1.0))
    assert pixels.shape == (2, 4, 4, 3)
    assert (pixels[0] == intact_row[:, :4]).all() and (pixels[1] == intact_row[:, second:]).all()  # the same colours
    assert L.display_values(torch.zeros(2, 5, 3, 4, 4)).shape == (2, 3, 4, 4)  # axes before the channels averaged


# The grey outputs' PNGs of image_comparison_png before RGB (commit 48369dd) on fixed inputs: the SHA-256 of their
# decoded pixels and their |difference| limits. The PNG bytes are these pixels saved as the old function saved them
# (PIL, compress_level=1), so equal pixels and the same save call mean byte-identical files.
GREY_BEFORE_RGB = {
    "one channel": ("e72c997fc319f23cf5b01a2422d971093d12810c942bdf46959d68419f4d3465", 0.6734269857406616),
    "tanh range": ("8451817e434f3f2c08618d596b70348919996a86d7b03816b51b401e49f25100", 0.5531874038279057),
    "two channels": ("355618c6bda92b9fc7444e3a9085294adc560b5cdbcc4118a197ef1aaff39e3f", 1.1455890176063752),
    "no channel": ("12143975f8394f2725ff51b71e310665654c168121cc939adaa520f9f135ede3", 0.9482660037579017),
}


def _grey_inputs():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 1, 5, 6)).astype(np.float32)
    b = a + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    yield "one channel", a, b, dict(n_show=2, scale=3, gap=1)
    yield "tanh range", np.tanh(a), np.tanh(b), dict(n_show=8, scale=1, gap=1, value_range=(-1.0, 1.0))
    c = rng.normal(size=(2, 2, 4, 7))
    yield "two channels", c, c * 0.5, dict(scale=2, gap=2)  # two channels: averaged, as before
    d = rng.uniform(size=(4, 6, 6))
    yield "no channel", d, d[::-1].copy(), dict(n_show=3)


def test_grey_outputs_are_drawn_exactly_as_before_rgb():
    import hashlib

    for name, intact, edited, options in _grey_inputs():
        png, limit = L.image_comparison_png(intact, edited, **options)
        decoded = Image.open(io.BytesIO(png))
        pixels = np.asarray(decoded)
        assert decoded.mode == "RGB" and hashlib.sha256(pixels.tobytes()).hexdigest() == GREY_BEFORE_RGB[name][0], name
        assert limit == GREY_BEFORE_RGB[name][1], name
        again = io.BytesIO()
        Image.fromarray(pixels).save(again, format="PNG", compress_level=1)
        assert again.getvalue() == png, name


def test_unit_grid_colour_bar_title_is_a_parameter():
    default = L.unit_grid_figure([1.0, -1.0])["data"][0]["marker"]["colorbar"]["title"]["text"]
    assert default == L.GRID_COLOUR_TITLE == "Shapley<br>value"
    titled = L.unit_grid_figure([1.0, -1.0], colour_title="mode<br>sum")
    assert titled["data"][0]["marker"]["colorbar"]["title"] == {"text": "mode<br>sum", "side": "top"}
