"""Modes page: the Shapley modes of the selected run (image grids, unit bars, unit x output heatmap, unit detail).
Every choice on the page is in the URL (order, output or image, colour scale, units shown, selected unit)."""

import math
from types import SimpleNamespace

import streamlit as st

from msa_core import figures, mode_views
from msa_core import lm_views as lm
from ui import resources, state
from ui.errors import shown
from ui.text import md_escape
from ui.unit_picker import unit_picker

state.page_setup()
st.title("Shapley modes")

record = resources.record(state.run_id())
if record is None:
    st.info("No run selected. Pick one in the sidebar, or launch one on the Run page (the default budget "
            "finishes in seconds).")
    st.page_link("pages/run.py", label="Go to the Run page", icon=":material/play_circle:")
    st.stop()

result = record.result
objective_name = record.spec.objective
labels, kind = None, None
with shown("Reading the output labels"):
    subject = resources.subject(record.spec.model, record.spec.inputs, getattr(record.spec, "tasks", None))
    objective_name = objective_name or subject.default_objective
    labels = (result.metadata or {}).get("output_labels") or subject.objective_labels(objective_name)
    kind = subject.objective_kind(objective_name)
n_flat = math.prod(result.output_shape)
is_image = figures.is_image_output(result.output_shape)
# image outputs are named by their axes (input, channel, row, column), never by a list of n_flat names
names, axis = (None, "pixel") if is_image else lm.run_output_names(labels, n_flat, kind, objective_name)

if result.on_disk:
    # a result on disk is never loaded whole: the grid and bars use per-unit thumbnails and totals computed
    # once per run (msa_core.thumbnails), the unit detail reads that one unit's mode
    thumbs, totals, gap = resources.run_summaries(record.id)
else:
    gap = result.efficiency_gap()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Units", result.n_players)
c2.metric("Output shape", " x ".join(map(str, result.output_shape)) or "scalar")
c3.metric("Evaluations", f"{result.n_evaluations:,}")
c4.metric("Efficiency gap", f"{gap:.2g}",
          help="max |sum of modes - (v(all intact) - v(all lesioned))|: zero up to rounding.")
st.caption(f"Run {record.id[:8]} · {md_escape(record.spec.model)} · objective {md_escape(objective_name)} · "
           f"{result.method} · {result.n_samples} samples · seed {result.seed}")
if kind == "tasks":
    st.info(f"The outputs are the {n_flat} tasks of the battery: each unit's mode is its contribution to each "
            "task's score.", icon=":material/checklist:")
elif kind == "tokens" and labels and objective_name.startswith(lm.TEXT_PREFIX):
    st.info(f"The outputs are the log-probabilities of each token of your text **{md_escape(objective_name[5:])}**, "
            "labelled position:token. The unit detail below shows a unit's mode as bars over the text's tokens.",
            icon=":material/text_fields:")
elif kind == "tokens" and labels:
    word = objective_name.split(":", 1)[1] if ":" in objective_name else "".join(labels[:-1])
    st.info(f"The outputs are the log-probabilities of each next token of the text **{md_escape(word)}**, labelled "
            "position:token (the last one, `<eos>`, is the end of the word).", icon=":material/text_fields:")

order_name = state.url_widget(st.radio, "Order units by", "order", options=["total", "abs", "index"], default="total",
                              horizontal=True, format_func={"total": "total contribution", "abs": "|total contribution|",
                                                            "index": "unit index"}.get)
if result.on_disk:
    ranked = totals[:, None]
    exact_thumbs = thumbs.shape[1] == 1 and thumbs.shape[2] == n_flat  # vector modes short enough to keep whole
    st.caption(f"This run's modes are stored on disk ({result.n_players:,} units): the overview shows per-unit "
               "thumbnails, the unit detail reads the selected unit only.")
else:
    ranked = result
    totals = result.total_contribution().numpy()
order = figures.unit_order(ranked, order_name)
units = [int(i) for i in order]

if is_image:
    cols = st.columns(3)
    n_samples = result.output_shape[0] if len(result.output_shape) > 2 else 1
    sample = state.url_widget(cols[0].selectbox, "Image" if not result.on_disk else "Image (unit detail)", "image",
                              options=["mean"] + list(range(n_samples)) if n_samples > 1 else ["mean"], default="mean",
                              format_func=lambda s: "mean over inputs" if s == "mean" else f"input {s}")
    scale = state.url_widget(cols[1].radio, "Colour scale", "scale", options=["shared", "per-unit"], default="shared",
                             horizontal=True)
    if result.n_players > 4:
        max_units = state.url_widget(cols[2].slider, "Units shown", "shown", default=min(32, result.n_players),
                                     min_value=4, max_value=min(128, result.n_players))
    else:
        max_units = result.n_players
    if figures.is_rgb_output(result.output_shape):
        st.caption("Three-channel (RGB) outputs: the grid shows each unit's mode averaged over channels; the unit "
                   "detail shows it per channel (red, green, blue, one shared signed scale), the colour shift "
                   "they make together (mid grey: no change; redder where the unit raises red, ...) and the "
                   "standard error averaged over channels.")
    with shown("Drawing the mode grid"):  # built once per run and settings: a unit change reuses it
        grid = resources.modes_grid(record.id, int(result.n_evaluations), order_name,
                                    "mean" if result.on_disk else sample, scale, int(max_units))
        st.plotly_chart(grid, key="modes_grid")
else:
    sample = "mean"
    per_output = not result.on_disk or exact_thumbs
    overview = result if not result.on_disk else SimpleNamespace(
        values=thumbs.reshape(len(totals), -1) if exact_thumbs else ranked, stderr=None,
        unit_labels=result.unit_labels)
    output = state.url_widget(st.selectbox, "Bars show", "output",
                              options=["total"] + (list(range(n_flat)) if per_output else []),
                              default="total",
                              format_func=lambda o: "total over outputs" if o == "total" else f"{axis} {names[o]}")
    with shown("Drawing the unit bars"):
        event = st.plotly_chart(
            figures.unit_bars(overview, output=None if output == "total" else int(output), output_labels=names,
                              order="total" if order_name != "index" else "index", output_title=axis),
            key="modes_bars", on_select="rerun", selection_mode="points",
        )
        points = event.selection.points if event is not None else []
        if points:
            clicked = str(points[0].get("x"))
            if clicked in result.unit_labels:
                st.session_state["modes_unit"] = result.unit_labels.index(clicked)
        if per_output:
            st.plotly_chart(figures.unit_output_heatmap(overview, output_labels=names, order=order_name,
                                                        output_title=axis), key="modes_heatmap")



@st.fragment
def unit_detail_panel() -> None:
    """The unit picker and that unit's mode: changing the unit reruns only this fragment, which reads that
    one unit (``result.mode(i)``), never the grid or the other units."""
    st.markdown("#### Unit detail")
    st.caption("Pick a unit here." if is_image else "Click a bar above or pick a unit here.")
    top_unit = int(figures.unit_order(ranked, "total")[0])  # the default whatever the order (a stable link)
    unit = unit_picker(units, result.unit_labels, totals, top_unit, ranked=order_name != "index")
    source = mode_views.unit_source(result, unit)  # only this unit's mode and standard error are read
    left, right = st.columns([3, 2])
    with left, shown("Drawing the unit detail"):
        st.plotly_chart(mode_views.detail_figure(source, 0, output_labels=names, sample=sample, output_title=axis),
                        key="modes_detail")
    with right:
        st.markdown("Top outputs (largest |value|)")
        st.dataframe(figures.top_outputs(source, 0, output_labels=names, k=10, output_title=axis), hide_index=True,
                     width="stretch")


unit_detail_panel()
