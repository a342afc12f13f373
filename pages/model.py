"""Model page: pick or load a model; its architecture, inputs, default output and layer catalogue."""

from pathlib import Path

import pandas as pd
import streamlit as st

from msa_core import editor_display, figures
from msa_core import lm_views as lm
from msa_core.tasks import SCORES, battery_from_rows, load_battery
from msa_core.zoo import paper_gan as paper_gan_recipe
from ui import resources, state
from ui.backend import list_builtins
from ui.errors import shown
from ui.text import md_escape

state.page_setup()
st.title("Model")

INPUTS_HELP = ("Example inputs, inputs on axis 0: a .npz (one array, or `x` / `inputs`; `labels` or `y` adds a "
               "per-class accuracy objective) or a .pt tensor file. TorchScript models need them; other models use "
               "their own inputs when none are given.")

with st.expander("Load another model", expanded=False):
    tab_builtin, tab_upload, tab_path = st.tabs(["Built-in", "Upload a file", "Path, recipe or Hugging Face folder"])
    with tab_builtin:
        builtins = []
        with shown("Listing the built-in models"):
            builtins = list_builtins()
        for name, description in builtins:
            cols = st.columns([1, 4])
            if cols[0].button(name, key=f"builtin_{name}", width="stretch"):
                state.set_model(name)
                st.rerun()
            cols[1].caption(description)
        st.markdown("**The paper's generator (your weights)**")
        problem = paper_gan_recipe.weights_problem()
        cols = st.columns([1, 4])
        if cols[0].button("paper DCGAN generator", key="builtin_paper_gan", width="stretch", disabled=bool(problem)):
            state.set_model(paper_gan_recipe.RECIPE)
            st.rerun()
        cols[1].caption(
            f"The paper's 128x128 RGB DCGAN generator (1,987 channels; recipe `{paper_gan_recipe.RECIPE}`). It needs "
            f"your own weights: the operator starts the app with `{paper_gan_recipe.WEIGHTS_ENV}=/path/to/"
            f"generator.safetensors` (or a `.pth` state dict) and optionally `{paper_gan_recipe.LATENTS_ENV}=32` "
            "latents (default 8). " + (f"Not available here: {md_escape(problem)}." if problem
                                       else f"Available: the weights in `${paper_gan_recipe.WEIGHTS_ENV}`."))
    with tab_upload:
        st.caption(f"A TorchScript (.pt/.ts) or torch.export (.pt2) file, at most {st.get_option('server.maxUploadSize')} "
                   "MB, and its example inputs "
                   "(TorchScript needs them; a .pt2 saved with example inputs does not).")
        upload = st.file_uploader("Model file", type=["pt", "pth", "ts", "pt2", "jit"], key="upload_model")
        upload_inputs = st.file_uploader("Example inputs (optional for .pt2)", type=["npz", "pt"], key="upload_inputs",
                                         help=INPUTS_HELP)
        if upload is not None and st.button("Load the uploaded model", type="primary"):
            with shown(f"Loading {upload.name}"):
                ref = resources.save_upload(upload.name, upload.getvalue())
                inputs_file = (resources.save_upload(upload_inputs.name, upload_inputs.getvalue())
                               if upload_inputs is not None else None)
                resources.subject(ref, inputs_file)
                state.set_model(ref, inputs_file)
                st.rerun()
    with tab_path:
        st.caption("A model file path, a recipe (`package.module:function` or `file.py:function` returning a model "
                   "and inputs), or a local Hugging Face model folder.")
        ref = st.text_input("Model reference", key="model_ref_input", placeholder="e.g. recipes/my_model.py:build")
        inputs_path = st.text_input("Example inputs file (optional)", key="model_inputs_input",
                                    placeholder="e.g. data/inputs.npz", help=INPUTS_HELP)
        if st.button("Load", disabled=not ref.strip()):
            with shown(f"Loading {ref.strip()}"):
                inputs_file = str(Path(inputs_path.strip()).expanduser().resolve()) if inputs_path.strip() else None
                resources.subject(ref.strip(), inputs_file)
                state.set_model(ref.strip(), inputs_file)
                st.rerun()

subject = None
with shown(f"Loading model {state.model()!r}"):
    subject = resources.subject(*state.choice())
if subject is None:
    st.info("Pick a built-in model in the sidebar or above.")
    st.stop()

st.subheader(md_escape(subject.name))
st.write(md_escape(subject.description or ""))
c1, c2, c3 = st.columns(3)
c1.metric("Weights", f"{subject.n_weights:,}", help="learned values (parameters; for a converted TorchScript "
                                                   "file, its weight buffers)")
c2.metric("Lesionable layers", len(subject.layers))
c3.metric("Output", subject.output_kind)
st.caption(f"Objectives: {md_escape(', '.join(subject.objectives))} "
           f"(default: **{md_escape(subject.default_objective)}**).")

left, right = st.columns([3, 2])
with left:
    st.markdown("#### Inputs")
    samples = subject.samples or {}
    if "images" in samples:
        labels = samples.get("labels")
        titles = [f"label {int(v)}" for v in labels] if labels is not None else None
        # a generator's outputs on its bounds (a Tanh: [-1, 1]) as in the Editor; input images on their own range
        value_range = editor_display.image_range(subject.model if subject.output_kind == "image" else None,
                                                 samples["images"])
        st.plotly_chart(figures.sample_images(samples["images"], titles=titles, value_range=value_range),
                        key="model_samples")
        if subject.output_kind == "image":
            st.caption("Generated images for the first latent vectors (the default output).")
    if "words" in samples:
        st.write("Sample words: " + ", ".join(md_escape(w) for w in samples["words"]))
    if "languages" in samples:
        st.write("Languages: " + md_escape(", ".join(samples["languages"])))
    shape = getattr(subject.inputs, "shape", None)
    st.caption(f"{shape[0]} evaluation inputs, each of shape {tuple(shape[1:])}." if shape is not None
               else f"Evaluation inputs: {type(subject.inputs).__name__}.")
    if state.inputs():
        st.caption(f"Inputs file: {md_escape(state.inputs())}.")
    st.markdown("#### Default output")
    with shown("Scoring the intact model"):
        scores = resources.editor(state.model(), (), None, inputs=state.inputs()).intact.scores
        small = {name: value for name, value in scores.items() if value.numel() <= 64}
        for name, value in small.items():
            labels = None
            with shown(f"Labels of {name}"):
                labels = subject.objective_labels(name)
            st.plotly_chart(figures.score_bars(value, labels=labels, title=f"{name} of the intact model",
                                               y_title=name), key=f"model_score_{name}")
        if not small:
            st.caption("The raw model output: the images above." if subject.output_kind == "image"
                       else "The raw model output.")
with right:
    st.markdown("#### Layer catalogue")
    st.dataframe(
        pd.DataFrame(
            [{"layer": l.path, "type": l.module_type, "units": l.n_units, "kind": l.unit_kind,
              "output shape": str(tuple(l.output_shape))} for l in subject.layers]
        ),
        hide_index=True,
        width="stretch",
    )
    st.markdown("**Default units:** " + md_escape(", ".join(str(getattr(u, "path", u)) for u in subject.default_units)))
    if subject.unit_presets:
        st.markdown("**Presets:** " + md_escape(", ".join(subject.unit_presets)))
    with st.expander("Architecture"):
        st.code(str(subject.model), language="text")



def battery_panel() -> None:
    """A language model's task battery: attach a shipped or uploaded one, edit it as a table, download it.
    The URL holds the battery file (a content-addressed copy under the uploads folder, or a shipped one)."""
    st.markdown("#### Task battery")
    st.caption("Named tasks of (prompt, answer) items; a run on the **tasks** objective has one output per task "
               "(modes: units x tasks). Score `accuracy`: the greedy continuation equals the answer; `logprob`: "
               "mean log-probability of the answer's tokens.")
    battery = None
    if state.tasks():
        with shown("Reading the task battery"):
            battery = load_battery(resources.battery_file(state.tasks()))
    b1, b2 = st.columns(2)
    shipped = {path.name: path for path in resources.shipped_batteries()}
    if shipped:
        name = b1.selectbox("Shipped battery", list(shipped), key="battery_pick")
        if b1.button("Attach the shipped battery", icon=":material/playlist_add:"):
            with shown(f"Attaching {name}"):
                resources.subject(state.model(), state.inputs(), str(shipped[name]))  # BatteryError: stays detached
                state.set_tasks(str(shipped[name]))
                st.rerun()
    upload = b2.file_uploader("Upload a battery (.yaml, .json)", type=["yaml", "yml", "json"], key="battery_upload")
    if upload is not None and b2.button("Attach the uploaded battery", icon=":material/upload:"):
        with shown(f"Reading {upload.name}"):
            path = resources.save_battery(load_battery(upload.getvalue().decode("utf-8", errors="replace")))
            resources.subject(state.model(), state.inputs(), path)
            state.set_tasks(path)
            st.rerun()
    if battery is None:
        return
    st.caption(f"Attached: **{md_escape(Path(state.tasks()).name)}**: {len(battery.tasks)} tasks, "
               f"{battery.n_items} items. Edit cells, add or delete rows, then apply (one row per item; a task's "
               "score is that of its first row).")
    rows = pd.DataFrame(battery.to_rows(), columns=["task", "score", "prompt", "answer"])
    edited = st.data_editor(rows, num_rows="dynamic", hide_index=True, width="stretch",
                            key=f"battery_table_{battery.sha256()[:12]}",
                            column_config={"score": st.column_config.SelectboxColumn("score", options=list(SCORES))})
    c1, c2, c3 = st.columns(3)
    if c1.button("Apply the edits", type="primary", icon=":material/check:"):
        with shown("Checking the edited battery"):
            path = resources.save_battery(battery_from_rows(edited.to_dict("records")))
            resources.subject(state.model(), state.inputs(), path)  # answers the model cannot tokenise: a message
            state.set_tasks(path)
            st.rerun()
    c2.download_button("Download the battery (YAML)", battery.to_yaml(), file_name="battery.yaml",
                       mime="application/x-yaml", icon=":material/download:", on_click="ignore")
    if c3.button("Detach the battery", icon=":material/link_off:"):
        state.set_tasks(None)
        st.rerun()


def text_panel() -> None:
    """The user's own text: typed here, scored token by token (the Run page offers it as an objective)."""
    st.markdown("#### Your text")
    if "model_text_input" not in st.session_state:
        st.session_state["model_text_input"] = state.text() or ""
    typed = st.text_area("Text to score (log-probability of each token given the ones before it)",
                         key="model_text_input", height=80)
    t1, t2 = st.columns([1, 3])
    if t1.button("Score this text", icon=":material/text_fields:", disabled=not typed.strip()):
        state.set_text(typed)
        st.rerun()
    if not state.text():
        return
    name = lm.text_objective_name(state.text())
    with shown("Scoring the text"):
        scores = resources.editor(state.model(), (), None, name, inputs=state.inputs()).intact.outputs
        labels = subject.objective_labels(name)
        st.plotly_chart(figures.score_bars(scores, labels=labels, title="log p of each token (intact model)",
                                           y_title="log p"), key="model_text_scores")
        t2.caption(f"{len(labels or [])} tokens scored. On the Run page, choose the objective "
                   f"**{md_escape(name[:40])}** to get a mode over the text's tokens.")


if lm.is_language_model(subject):
    battery_panel()
    text_panel()

st.page_link("pages/run.py", label="Next: run MSA on this model", icon=":material/play_circle:")
