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
