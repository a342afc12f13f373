"""msa_core.figures: every figure builds from small results, with the conventions the app relies on."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from msa_core import ShapleyResult
from msa_core import figures as F


def _result(shape=(4,), n=5, stderr=True):
    torch.manual_seed(0)
    values = torch.randn(n, *shape, dtype=torch.float64)
    return ShapleyResult(
        values=values,
        stderr=values.abs() * 0.1 if stderr else None,
        n_evaluations=10,
        intact=values.sum(0),
        empty=torch.zeros(shape, dtype=torch.float64),
        method="permutation",
        unit_labels=[f"L:{i}" for i in range(n)],
    )


def test_unit_order_and_image_detection():
    r = _result()
    totals = r.total_contribution().numpy()
    assert list(F.unit_order(r, "total")) == list(np.argsort(-totals))
    assert list(F.unit_order(r, "index")) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        F.unit_order(r, "nope")
    assert F.is_image_output((3, 1, 8, 8)) and not F.is_image_output((10,)) and not F.is_image_output((5, 2))


def test_mode_grid_is_centred_at_zero_with_shared_or_per_unit_scales():
    r = _result(shape=(2, 1, 8, 8), n=6)
    fig = F.mode_grid(r, scale="shared", max_units=4)
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 4
    assert all(t.zmin == -t.zmax and t.zmid == 0 for t in heatmaps)
    assert len({t.zmax for t in heatmaps}) == 1
    per_unit = F.mode_grid(r, scale="per-unit", sample=1)
    assert len({t.zmax for t in per_unit.data}) > 1
    assert F.mode_image(r.values[0], sample=0).shape == (8, 8)


def test_vector_figures():
    r = _result(shape=(4,))
    labels = ["a", "b", "c", "d"]
    bars = F.unit_bars(r, output=2, output_labels=labels)
    assert bars.data[0].error_y.array is not None and len(bars.data[0].x) == 5
    assert F.unit_bars(r).data[0].error_y.array is None  # totals: no per-output stderr
    heat = F.unit_output_heatmap(r, output_labels=labels)
    assert heat.data[0].zmid == 0 and list(heat.data[0].y) == labels
    big = F.unit_output_heatmap(_result(shape=(200,)), max_outputs=10)
    assert np.asarray(big.data[0].z).shape == (10, 5)
    detail = F.unit_detail(r, 1, output_labels=labels)
    assert list(detail.data[0].x) == labels
    table = F.top_outputs(r, 1, output_labels=labels, k=2)
    assert list(table.columns) == ["output", "value", "stderr", "z"] and len(table) == 2
    assert abs(table["value"].iloc[0]) >= abs(table["value"].iloc[1])
    image_detail = F.unit_detail(_result(shape=(1, 8, 8)), 0)
    assert len(image_detail.data) == 2  # mode and standard error
    assert len(F.unit_detail(_result(shape=(1, 8, 8), stderr=False), 0).data) == 1


def test_score_and_sample_figures():
    assert len(F.score_bars([1, 2, 3]).data[0].x) == 3
    assert len(F.sample_images(np.zeros((5, 8, 8)), titles=list("abcde")).data) == 5


def test_sample_images_draw_grey_on_a_value_range_and_rgb_in_colour():
    grey = np.linspace(0.2, 0.6, 2 * 8 * 8).reshape(2, 1, 8, 8)
    stretched = F.sample_images(grey).data
    assert [(t.type, t.zmin, t.zmax) for t in stretched] == [("heatmap", 0.2, 0.6)] * 2  # default: the joint range
    bounded = F.sample_images(grey, value_range=(-1.0, 1.0)).data
    assert [(t.zmin, t.zmax) for t in bounded] == [(-1.0, 1.0)] * 2
    assert np.asarray(bounded[1].z).tolist() == grey[1, 0].tolist()  # the values themselves, for the hover
    rgb = np.zeros((3, 3, 8, 8))
    rgb[1, :, 2, 5] = [-1.0, 0.5, 1.0]
    fig = F.sample_images(rgb, titles=list("abc"), value_range=(-1.0, 1.0))
    assert [t.type for t in fig.data] == ["image"] * 3
    pixels = np.asarray(fig.data[1].z)
    assert pixels.shape == (8, 8, 3) and pixels[2, 5].tolist() == [0, 191, 255]  # -1, 0.5 (191.25), 1
    assert pixels[0, 0].tolist() == [128, 128, 128]  # 0: the middle of [-1, 1]
    assert [a.text for a in fig.layout.annotations] == list("abc")


def test_lesion_curve_figure_from_either_form():
    x = np.arange(4)
    curves = {"removed": x, "curves": {"Shapley": np.array([1, 0.5, 0.2, 0.1])}, "random_mean": np.ones(4) * 0.8,
              "random_low": np.ones(4) * 0.7, "random_high": np.ones(4) * 0.9, "n_random": 10}
    fig = F.lesion_curve_figure(curves)
    assert [t.name for t in fig.data][-1] == "Shapley" and len(fig.data) == 3
    as_dict = {"removed": x, "curves": {"a": x, "b": x}, "random_mean": x, "random_low": x, "random_high": x,
               "n_random": 0}
    assert len(F.lesion_curve_figure(as_dict).data) == 2


def test_output_names_are_distinct_for_repeated_letters_and_tokens():
    # "hello" + end of word: two "l" outputs must stay two bars, two rows, two table entries
    tokens = list("hello") + ["<eos>"]
    names = F.output_names(tokens, 6, positional=True)
    assert names == ["0:h", "1:e", "2:l", "3:l", "4:o", "5:<eos>"]
    assert F.output_names(list("hello"), 5)[2:4] == ["2:l", "3:l"]  # repeats are numbered even when not tokens
    assert F.output_names(["a", "b"], 2) == ["a", "b"] and F.output_names(None, 3) == ["0", "1", "2"]
    assert F.output_names(["a"], 2) == ["0", "1"]  # wrong count: positions, never a misleading label
    r = _result(shape=(6,))
    bars = F.unit_detail(r, 0, output_labels=names, output_title="position:token")
    assert list(bars.data[0].x) == names and bars.layout.xaxis.title.text == "position:token"
    heat = F.unit_output_heatmap(r, output_labels=names, output_title="position:token")
    assert len(set(heat.data[0].y)) == 6 and heat.layout.yaxis.title.text == "position:token"
    assert list(heat.layout.xaxis.tickvals) == [r.unit_labels[i] for i in F.unit_order(r)]  # every unit named


def test_axis_titles_and_image_axis_names():
    assert F.output_axis_title("classes", [str(d) for d in range(10)]) == "digit"
    assert F.output_axis_title("classes", ["cat", "dog"]) == "class"
    assert F.output_axis_title("languages") == "language" and F.output_axis_title(None) == "output"
    table = F.top_outputs(_result(shape=(2, 1, 8, 8)), 0, k=3)
    assert list(table.columns) == ["input", "channel", "row", "column", "value", "stderr", "z"]
    assert table[["input", "channel", "row", "column"]].max().tolist() <= [1, 0, 7, 7]
    assert list(F.top_outputs(_result(shape=(4,)), 0, output_labels=list("abcd"), output_title="digit").columns)[0] == "digit"


def test_mode_grid_tiles_name_the_unit_and_its_total_on_two_lines():
    fig = F.mode_grid(_result(shape=(1, 8, 8), n=3))
    titles = [a.text for a in fig.layout.annotations]
    assert all(t.startswith("<b>L:") and "<br>total " in t for t in titles)


def test_a_constant_lesion_curve_gets_a_readable_axis():
    flat = {"removed": np.arange(3), "curves": {"a": [0.1, 0.1 + 1e-17, 0.1]}, "n_random": 0}
    fig = F.lesion_curve_figure(flat)
    low, high = fig.layout.yaxis.range
    assert low < 0.1 < high and high - low == pytest.approx(0.01)
    assert fig.layout.legend.y < 0  # below the axes, never over the data


def test_rgb_modes_are_drawn_per_channel_with_their_colour_shift():
    # unit 0 raises red, lowers blue and leaves green alone at every pixel of both inputs
    values = torch.zeros(2, 2, 3, 6, 6, dtype=torch.float64)
    values[0, :, 0] = 2.0
    values[0, :, 2] = -1.0
    values[0, 1, 0, 0, 0] = 4.0  # input 1 only: one brighter red pixel
    r = ShapleyResult(values=values, stderr=values.abs() / 10, n_evaluations=1, intact=values.sum(0),
                      empty=torch.zeros(2, 3, 6, 6, dtype=torch.float64), method="permutation",
                      unit_labels=["g:0", "g:1"])
    assert F.is_rgb_output((2, 3, 6, 6)) and not F.is_rgb_output((3, 6, 6)) and not F.is_rgb_output((2, 1, 6, 6))
    fig = F.unit_detail(r, 0)
    red, green, blue, shift, se = fig.data
    assert [t.type for t in fig.data] == ["heatmap"] * 3 + ["image", "heatmap"]
    assert np.asarray(red.z)[0, 0] == 3.0 and np.asarray(red.z)[1, 1] == 2.0  # mean over inputs: (2 + 4) / 2
    np.testing.assert_array_equal(np.asarray(green.z), 0.0)
    np.testing.assert_array_equal(np.asarray(blue.z), -1.0)
    assert red.zmin == blue.zmin == -3.0 and red.zmax == 3.0  # one signed scale for the three channels
    pixel = np.asarray(shift.z)[1, 1]
    assert pixel.tolist() == [212, 128, 85]  # 127.5 + 127.5 * (2/3, 0, -1/3) of the scale, rounded half to even
    np.testing.assert_allclose(np.asarray(se.z), values[0].abs().mean(axis=(0, 1)).numpy() / 10)
    one = F.unit_detail(r, 0, sample=1)
    assert np.asarray(one.data[0].z)[0, 0] == 4.0 and one.layout.title.text == "unit g:0 (input 1)"
    assert F.colour_shift(np.zeros((3, 2, 2))).tolist() == [[[128] * 3] * 2] * 2  # no change: mid grey
    table = F.top_outputs(r, 0, k=2)
    assert table["channel"].tolist() == [0, 0] and table["value"].tolist() == [4.0, 2.0]
    assert table["z"].tolist() == [10.0, 10.0]


def test_top_outputs_without_standard_errors_print_a_dash():
    table = F.top_outputs(_result(stderr=False), 0, k=3)
    assert table["stderr"].tolist() == ["-"] * 3 and table["z"].tolist() == ["-"] * 3
    assert table["value"].dtype == np.float64
