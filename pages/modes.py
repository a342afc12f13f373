"""Modes page: the Shapley modes of the selected run (image grids, unit bars, unit x output heatmap, unit detail)."""

import streamlit as st

from msa_core import figures
from ui import resources, state
from ui.errors import shown

state.page_setup()
st.title("Shapley modes")

record = resources.record(state.run_id())
if record is None:
    st.info("No run selected. Pick one in the sidebar, or launch one on the Run page (the default budget "
            "finishes in seconds).")
    st.page_link("pages/run.py", label="Go to the Run page", icon=":material/play_circle:")
    st.stop()

result = record.result
labels = None
with shown("Reading the output labels"):
    subject = resources.subject(record.spec.model, record.spec.inputs)
    labels = subject.objective_labels(record.spec.objective or subject.default_objective)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Units", result.n_players)
c2.metric("Output shape", " x ".join(map(str, result.output_shape)) or "scalar")
c3.metric("Evaluations", f"{result.n_evaluations:,}")
c4.metric("Efficiency gap", f"{result.efficiency_gap():.2g}",
          help="max |sum of modes - (v(all intact) - v(all lesioned))|: zero up to rounding.")
st.caption(f"Run {record.id[:8]} · {record.spec.model} · objective {record.spec.objective or 'default'} · "
           f"{result.method} · {result.n_samples} samples · seed {result.seed}")

order_name = st.radio("Order units by", ["total", "abs", "index"], horizontal=True,
                      format_func={"total": "total contribution", "abs": "|total contribution|",
                                   "index": "unit index"}.get)
order = figures.unit_order(result, order_name)
totals = result.total_contribution().numpy()
if "modes_unit" not in st.session_state or st.session_state["modes_unit"] >= result.n_players:
    st.session_state["modes_unit"] = int(order[0])

if figures.is_image_output(result.output_shape):
    cols = st.columns(3)
    n_samples = result.output_shape[0] if len(result.output_shape) > 2 else 1
    sample = cols[0].selectbox("Image", ["mean"] + list(range(n_samples)) if n_samples > 1 else ["mean"],
                               format_func=lambda s: "mean over inputs" if s == "mean" else f"input {s}")
    scale = cols[1].radio("Colour scale", ["shared", "per-unit"], horizontal=True)
    max_units = cols[2].slider("Units shown", 4, min(128, result.n_players), min(32, result.n_players)) \
        if result.n_players > 4 else result.n_players
    with shown("Drawing the mode grid"):
        st.plotly_chart(figures.mode_grid(result, units=order, sample=sample, scale=scale, max_units=max_units),
                        key="modes_grid")
else:
    sample = "mean"
    outputs = ["total"] + list(range(result.values[0].numel()))
    output = st.selectbox("Bars show", outputs,
                          format_func=lambda o: "total over outputs" if o == "total" else
                          (labels[o] if labels and len(labels) == len(outputs) - 1 else f"output {o}"))
    with shown("Drawing the unit bars"):
        event = st.plotly_chart(
            figures.unit_bars(result, output=None if output == "total" else int(output), output_labels=labels,
                              order="total" if order_name != "index" else "index"),
            key="modes_bars", on_select="rerun", selection_mode="points",
        )
        points = event.selection.points if event is not None else []
        if points:
            clicked = str(points[0].get("x"))
            if clicked in result.unit_labels:
                st.session_state["modes_unit"] = result.unit_labels.index(clicked)
        st.plotly_chart(figures.unit_output_heatmap(result, output_labels=labels, order=order_name),
                        key="modes_heatmap")

st.markdown("#### Unit detail")
st.caption("Click a bar above or pick a unit here.")
unit = st.selectbox("Unit", [int(i) for i in order], key="modes_unit",
                    format_func=lambda i: f"{result.unit_labels[i]} (total {totals[i]:+.4g})")
left, right = st.columns([3, 2])
with left, shown("Drawing the unit detail"):
    st.plotly_chart(figures.unit_detail(result, unit, output_labels=labels, sample=sample), key="modes_detail")
with right:
    st.markdown("Top outputs (largest |value|)")
    st.dataframe(figures.top_outputs(result, unit, output_labels=labels, k=10), hide_index=True,
                 width="stretch")
