"""Lesion curves page: performance as units are removed in Shapley order vs random and activation order."""

import streamlit as st

from msa_core import figures
from ui import resources, state
from ui.errors import shown

state.page_setup()
st.title("Lesion curves")
st.caption("Remove units one after the other, most (or least) important first by Shapley value, and watch the "
           "objective; compare with random orders (mean and 95% band) and with the largest activations first.")

record = resources.record(state.run_id())
if record is None:
    st.info("No run selected: the curves order units by a run's Shapley values. Pick a run in the sidebar or "
            "launch one on the Run page.")
    st.page_link("pages/run.py", label="Go to the Run page", icon=":material/play_circle:")
    st.stop()

subject = None
with shown(f"Loading model {record.spec.model!r}"):
    subject = resources.subject(record.spec.model, record.spec.inputs)
if subject is None:
    st.stop()

objectives = list(subject.objectives)
run_objective = record.spec.objective or subject.default_objective
cols = st.columns(3)
objective = cols[0].selectbox("Objective", objectives,
                              index=objectives.index(run_objective) if run_objective in objectives else 0,
                              help="Rank units by the run's Shapley values, score the curve on any objective.")
n_random = cols[1].slider("Random orders", 5, 100, 10, step=5)
is_image = subject.objective_kind(objective) in ("image",) if hasattr(subject, "objective_kind") else False
metric = cols[2].radio("Score", ["mean", "fidelity"], index=1 if is_image else 0, horizontal=True,
                       format_func={"mean": "mean over outputs",
                                    "fidelity": "fidelity to the intact output"}.get,
                       help="mean: the objective averaged over its outputs (e.g. mean per-class accuracy). "
                            "fidelity: 1 - |v(S) - v(all)| / |v(none) - v(all)|, for images and raw outputs.")

with shown("Computing the lesion curves"):
    data = resources.lesion_curve_data(record.id, objective, int(n_random), metric)
    st.plotly_chart(figures.lesion_curve_figure(data, y_title=f"{objective} ({metric})",
                                                title=f"Lesion curves of {record.spec.model} ({len(data['removed']) - 1} units)"),
                    key="curves_figure")
    st.caption("A good ranking destroys performance fastest when the most important units go first, and keeps it "
               "longest when the least important go first.")
