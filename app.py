"""MSA Explorer: the Streamlit entry point.

Run ``./run.sh app`` (or ``streamlit run app.py``). This script sets up the page, the sidebar's
model and run pickers, and ``st.navigation`` over the page scripts in ``pages/``. The model and run
live in the URL (``?model=...&run=...``) so a link reopens the same view.
"""

import os

import streamlit as st
import torch

from msa_core.zoo import paper_gan
from ui import resources, state
from ui.backend import describe_run, list_builtins
from ui.errors import shown
from ui.text import md_escape

st.set_page_config(page_title="MSA Explorer", page_icon=":material/hub:", layout="wide")
if os.environ.get("MSA_TORCH_THREADS", "").isdigit():  # e.g. 1 on a busy shared CPU (OpenMP spinning)
    torch.set_num_threads(max(1, int(os.environ["MSA_TORCH_THREADS"])))
state.init()

PAGES = [
    st.Page("pages/model.py", title="Model", icon=":material/memory:", url_path="home", default=True),
    # the same page at /model too (a typed or shared /model link opens it, not "Page not found")
    st.Page("pages/model.py", title="Model", icon=":material/memory:", url_path="model", visibility="hidden"),
    st.Page("pages/run.py", title="Run", icon=":material/play_circle:", url_path="run"),
    st.Page("pages/modes.py", title="Modes", icon=":material/grid_view:", url_path="modes"),
    st.Page("pages/lesion_curves.py", title="Lesion curves", icon=":material/trending_down:", url_path="curves"),
    st.Page("pages/editor.py", title="Editor", icon=":material/ads_click:", url_path="editor"),
    st.Page("pages/findings.py", title="Findings", icon=":material/article:", url_path="findings"),
]
page = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### MSA Explorer")
    builtins: list[tuple[str, str]] = []
    with shown("Listing the built-in models"):
        builtins = list(list_builtins())
    options = [(name, None) for name, _ in builtins]
    names: dict[tuple[str, str | None], str] = {}
    if paper_gan.weights_problem() is None:  # this server set $MSA_PAPER_GAN_WEIGHTS: list the paper's generator
        options.append((paper_gan.RECIPE, None))
        names[(paper_gan.RECIPE, None)] = "paper DCGAN generator"
    options += [choice for choice in st.session_state.get(state.EXTRA_MODELS, []) if choice not in options]
    if state.choice() not in options:
        options.append(state.choice())
    model_key = f"sidebar_model_{state.model()}_{state.inputs()}"
    st.selectbox(
        "Model",
        options,
        index=options.index(state.choice()),
        format_func=lambda choice: names.get(choice) or state.choice_label(choice),
        help="A built-in model, or one you loaded on the Model page.",
        key=model_key,
        on_change=lambda: state.set_model(*st.session_state[model_key]),
    )

    records = resources.runs_for(*state.choice())
    ids = [None] + [r.id for r in records]
    labels = {None: "(no run selected)"} | {r.id: describe_run(r) for r in records}
    linked = resources.record(state.run_id())  # a link may hold a short id, or a run of another model
    if linked is not None and linked.id != state.run_id():
        state.set_run(linked.id)
    current = state.run_id() if state.run_id() in ids else None
    if linked is not None and current is None:
        ids.append(linked.id)
        labels[linked.id] = describe_run(linked)
        current = linked.id
    run_key = f"sidebar_run_{state.model()}_{state.inputs()}_{current}_{len(ids)}"
    st.selectbox(
        "Run",
        ids,
        index=ids.index(current),
        format_func=lambda i: labels.get(i, str(i)),
        help="Results of this model in the run store. Launch new ones on the Run page.",
        key=run_key,
        on_change=lambda: state.set_run(st.session_state[run_key]),
    )
    if state.run_id() and resources.record(state.run_id()) is None:
        st.warning(f"Run {md_escape(state.run_id()[:8])} is not in the run store.")  # the id comes from the URL
    st.caption("Multiperturbation Shapley-value Analysis: lesion random combinations of units and give each "
               "unit its Shapley value (a Shapley *mode* for tensor outputs).")

state.begin_run()
st.session_state[state.APP_RUNNING] = True
try:
    page.run()
finally:
    st.session_state[state.APP_RUNNING] = False
    state.sync_query()  # after the page: it holds the page's own settings too
