"""The Model page offers the paper's generator (issue 13): the recipe ``msa_core.zoo.paper_gan:paper_gan`` with
the user's weights from ``$MSA_PAPER_GAN_WEIGHTS``. Without them its button is off and says why, and a link to it
shows one clear message (no traceback); with them a click opens it, and the sidebar's model picker lists it."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from .test_pages import _app, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures

REF = "msa_core.zoo.paper_gan:paper_gan"


def _paper_button(at):
    return at.button(key="builtin_paper_gan")


def _sidebar_models(at) -> list[str]:
    return list(at.sidebar.selectbox[0].options)  # the labels shown


def _weights(tmp_path):
    from safetensors.torch import save_file

    from msa_core.zoo.paper_gan import paper_dcgan_generator

    generator = paper_dcgan_generator(seed=1, channels=(8, 8, 4, 4, 4))  # the paper's shape at a small width
    weights = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(weights))
    return weights


def test_without_weights_the_paper_generator_is_listed_off_and_a_link_to_it_says_why(msa_home, monkeypatch):
    monkeypatch.delenv("MSA_PAPER_GAN_WEIGHTS", raising=False)
    at = _app("mlp-digits").run()
    _no_errors(at, "model page")
    button = _paper_button(at)
    assert button.label == "paper DCGAN generator" and button.disabled
    models = _sidebar_models(at)
    assert "mlp-digits" in models and "dcgan-digits" in models
    assert not any("paper" in label for label in models)  # the sidebar lists only what opens here
    notes = [c.value.replace("\\", "") for c in at.caption if REF in c.value]  # Markdown escapes dropped
    assert len(notes) == 1 and "MSA_PAPER_GAN_WEIGHTS=/path/to/generator.safetensors" in notes[0]
    assert "Not available here: MSA_PAPER_GAN_WEIGHTS is not set on this server" in notes[0]

    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", "/nonexistent/generator.safetensors")
    at = _app("mlp-digits").run()
    assert _paper_button(at).disabled
    assert not any("paper" in label for label in _sidebar_models(at))
    assert any("names '/nonexistent/generator.safetensors', which is not a file on this server" in
               c.value.replace("\\", "") for c in at.caption)

    monkeypatch.delenv("MSA_PAPER_GAN_WEIGHTS")
    at = _app(REF).run()  # a shared link to the recipe on a server without the weights
    assert not at.exception
    assert [e.value.replace("\\", "") for e in at.error] == [
        f"Loading model '{REF}' failed: the recipe '{REF}' raised ValueError: set MSA_PAPER_GAN_WEIGHTS=/path/to/"
        "generator.safetensors (or .pth): no weights ship with MSA Explorer for the paper's generator"]


def test_with_weights_a_click_opens_the_paper_generator(msa_home, tmp_path, monkeypatch):
    weights = _weights(tmp_path)
    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(weights))
    monkeypatch.setenv("MSA_PAPER_GAN_LATENTS", "2")
    at = _app("mlp-digits").run()
    button = _paper_button(at)
    assert not button.disabled
    assert any("Available: the weights in" in c.value for c in at.caption)
    button.click().run()
    _no_errors(at, "model page (paper generator)")
    assert at.query_params["model"] in ([REF], REF)
    assert at.subheader[0].value == "paper DCGAN generator"
    assert any("(8, 8, 4, 4, 4 hidden channels, 100-d latent) with the weights in generator.safetensors, 2 fixed "
               "latents" in m.value.replace("\\", "") for m in at.markdown)
    layers = at.dataframe[0].value
    assert [(row.layer, row.units) for row in layers.itertuples() if row.layer.count(".") == 1] == [
        ("net.0", 8), ("net.1", 8), ("net.2", 4), ("net.3", 4), ("net.4", 4), ("net.5", 3)]


def test_with_weights_the_sidebar_lists_the_paper_generator_and_opens_it(msa_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_PAPER_GAN_WEIGHTS", str(_weights(tmp_path)))
    monkeypatch.setenv("MSA_PAPER_GAN_LATENTS", "2")
    at = _app("mlp-digits").run()
    _no_errors(at, "model page")
    models = _sidebar_models(at)
    assert models.count("paper DCGAN generator") == 1 and models.index("paper DCGAN generator") > models.index("mlp-digits")
    at.sidebar.selectbox[0].set_value((REF, None)).run()
    _no_errors(at, "model page (paper generator from the sidebar)")
    assert at.session_state["msa_model"] == REF and at.subheader[0].value == "paper DCGAN generator"
    assert at.sidebar.selectbox[0].value == (REF, None)
    assert _sidebar_models(at).count("paper DCGAN generator") == 1  # not listed twice once it is the current model
