"""The Editor on an on-disk run of the paper's generator shape (issue 13): a reduced-width generator with the
user's weights (recipe ``msa_core.zoo.paper_gan:paper_gan``), all 131 channels lesioned, modes on disk. The
page reads only the lesioned units' modes, its Shapley prediction is the intact output minus their sum, and
the actual output is the generator's forward pass with those channels zeroed."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("streamlit")
import torch  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from msa_core.ondisk import ChunkedArray  # noqa: E402

from ..test_thumbnails import count_rows_read  # noqa: E402
from .test_pages import ROOT, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures

WIDTHS = (64, 32, 16, 8, 8)  # the paper's shape (five blocks, 128x128 RGB) at 1/16 of its width
UNITS = ("net.0", "net.1", "net.2", "net.3", "net.4", "net.5")
REF = "msa_core.zoo.paper_gan:paper_gan"


def _zeroed_forward(model, latents, labels, lesioned) -> torch.Tensor:
    """The generator's output with the channels ``labels[i]`` (``"net.k:c"``) zeroed, by plain forward hooks."""
    by_layer: dict[str, list[int]] = {}
    for i in lesioned:
        layer, _, channel = labels[i].rpartition(":")
        by_layer.setdefault(layer, []).append(int(channel))
    handles = []
    modules = dict(model.named_modules())
    for layer, channels in by_layer.items():
        def zero(module, args, output, channels=channels):
            output = output.clone()
            output[:, channels] = 0
            return output
        handles.append(modules[layer].register_forward_hook(zero))
    try:
        with torch.no_grad():
            return model(latents).double()
    finally:
        for handle in handles:
            handle.remove()


def test_editor_on_an_on_disk_run_of_the_paper_generator(msa_home, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from streamlit.util import calc_hash

    from msa_core.runs import RunSpec, RunStore, execute
    from msa_core.zoo.paper_gan import paper_dcgan_generator, paper_gan

    generator = paper_dcgan_generator(seed=3, channels=WIDTHS)
    weights = tmp_path / "generator.safetensors"  # the user's own weights file
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(weights))
    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(weights))
    monkeypatch.setenv("MSA_PAPER_GAN_LATENTS", "1")
    store = RunStore(str(msa_home))
    run = execute(RunSpec(REF, units=UNITS, n_permutations=1), store=store, max_memory="16MB")
    result = store.get(run.id).result
    assert result.on_disk and result.n_players == 131 and result.output_shape == (1, 3, 128, 128)

    monkeypatch.setattr("msa_core.editor_units.GRID_LIMIT", 64)  # 131 units: the grid shows a view at a time
    monkeypatch.setattr("msa_core.thumbnails._RANGE_BYTES", 8 * 3 * 128 * 128 * 8)  # totals: 8 units a read
    rows_read = count_rows_read(monkeypatch)

    def whole(self, *args, **kwargs):
        raise AssertionError("the editor read the whole modes array")

    monkeypatch.setattr(ChunkedArray, "numpy", whole)
    monkeypatch.setattr(ChunkedArray, "to_tensor", whole)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["model"] = REF
    at.query_params["run"] = run.id
    at._page_hash = calc_hash("editor")
    at.run()
    _no_errors(at, "editor (on disk)")
    assert rows_read and max(rows_read) <= 8  # totals a range at a time, never all 131 units
    view = next(w for w in at.selectbox if w.label.startswith("Units shown"))
    assert view.value == "top 64 by |Shapley value|" and "net.1 (32 units)" in view.options

    totals = np.load(msa_home / "arrays" / run.id / "totals.npy")
    # the colour scale is the shown hidden layers': the 3 output channels (net.5) do not set it
    from msa_core.editor_display import colour_scale

    grid = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    on_grid = list(grid["customdata"])
    outputs = [i for i in on_grid if result.unit_labels[i].startswith("net.5:")]
    scale = colour_scale(totals[on_grid], [result.unit_labels[i] for i in on_grid])
    assert len(outputs) == 3 and "net.5" not in scale.layers
    assert grid["marker"]["cmax"] == pytest.approx(scale.limit) and scale.limit < np.abs(totals[outputs]).min()
    assert grid["marker"]["colorbar"]["title"]["text"] == scale.title and scale.n_clipped >= 3
    rows_read.clear()
    at.number_input[0].set_value(3).run()
    next(b for b in at.button if b.label == "Lesion top-3").click().run()
    _no_errors(at, "editor (top-3)")
    lesioned = sorted(int(i) for i in np.argsort(-totals, kind="stable")[:3])
    shown = at.session_state["editor_view"]
    assert list(shown["lesioned"]) == lesioned
    assert sum(rows_read) == 3  # the three lesioned units' modes, nothing else

    modes = torch.from_numpy(result.values.read_rows(lesioned)).double()
    intact = result.intact.double()
    assert torch.allclose(shown["predicted"], intact - modes.sum(0), atol=1e-10)
    subject = paper_gan()
    actual = _zeroed_forward(subject["model"], subject["inputs"], result.unit_labels, lesioned)
    assert torch.allclose(shown["actual"], actual, atol=1e-5)
    assert not torch.allclose(shown["actual"], intact.float().double(), atol=1e-4)  # the lesion changed the image

    rows_read.clear()
    next(b for b in at.button if b.label == "Lesion bottom-3").click().run()
    lesioned = sorted(int(i) for i in np.argsort(totals, kind="stable")[:3])
    shown = at.session_state["editor_view"]
    assert list(shown["lesioned"]) == lesioned and sum(rows_read) == 3
    modes = torch.from_numpy(result.values.read_rows(lesioned)).double()
    assert torch.allclose(shown["predicted"], intact - modes.sum(0), atol=1e-10)
    assert torch.allclose(shown["actual"], _zeroed_forward(subject["model"], subject["inputs"], result.unit_labels,
                                                           lesioned), atol=1e-5)

    view = next(w for w in at.selectbox if w.label.startswith("Units shown"))
    view.set_value("net.1 (32 units)").run()
    _no_errors(at, "editor (layer view)")
    grid = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert grid["customdata"] == list(range(64, 96))  # net.1's channels, by their index in the game
    assert at.query_params["view"] in (["net.1 (32 units)"], "net.1 (32 units)")
