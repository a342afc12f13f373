"""Lesion curves page: performance as units are removed in the order of every ranking the library has
(Shapley value both ways, activation magnitude, weight norm, leave-one-out) against random orders, with
each curve's area under the curve and a plain explanation of what the curves mean."""

import pandas as pd
import streamlit as st

from msa_core import figures
from msa_core.analysis.lesion_report import RANDOM, RANKINGS
from ui import resources, state
from ui.errors import shown

state.page_setup()
st.title("Lesion curves")
st.caption("Remove units one after the other from the full network in the order of a ranking and watch the "
           "objective; compare with random orders (mean and 95% band). The area under a curve (AUC) is the mean "
           "objective along the removal: lower means the ranking finds the responsible units sooner.")

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
cols = st.columns([2, 1, 2])
objective = state.url_widget(cols[0].selectbox, "Objective", "score_on", options=objectives,
                             default=run_objective if run_objective in objectives else objectives[0],
                             help="Rank units by the run's Shapley values, score the curve on any objective.")
n_random = state.url_widget(cols[1].slider, "Random orders", "random", default=10, min_value=5, max_value=100,
                            step=5)
is_image = subject.objective_kind(objective) == "image"
metric = state.url_widget(cols[2].radio, "Score", "score", options=["mean", "fidelity"],
                          default="fidelity" if is_image else "mean", horizontal=True,
                          format_func={"mean": "mean over outputs", "fidelity": "fidelity to the intact output"}.get,
                          help="mean: the objective averaged over its outputs (e.g. mean per-class accuracy). "
                               "fidelity: 1 - |v(S) - v(all)| / |v(none) - v(all)|, for images and raw outputs.")
shown_rankings = state.url_widget(st.multiselect, "Rankings shown", "rankings", options=list(RANKINGS),
                                  default=list(RANKINGS), format_func=RANKINGS.get,
                                  help="Shapley value (both ways), mean |activation|, the product of incoming and "
                                       "outgoing weight norms, and the drop when the unit alone is lesioned.")

with shown("Computing the lesion curves"):
    report = resources.lesion_curve_data(record.id, objective, int(n_random), metric)
    data = report.figure_data()
    keep = {RANKINGS[key] for key in shown_rankings}
    data["curves"] = {shown_name: data["curves"][shown_name] for full, shown_name in
                      zip(report.curves, list(data["curves"])) if full in keep}
    st.plotly_chart(figures.lesion_curve_figure(data, y_title=f"{objective} ({metric})",
                                                title=f"Lesion curves of {record.spec.model} "
                                                      f"({len(report.removed) - 1} units)"),
                    key="curves_figure")
    along = report.random.values
    if float(along.max() - along.min()) <= 1e-9 * (1.0 + float(abs(along).max())):
        st.warning(f"The {metric} of {objective!r} does not change when units are removed (class probabilities, "
                   "for one, always average 1 / number of classes): choose the fidelity score or another objective.")
    for line in report.explanation:
        st.info(line, icon=":material/info:")
    aucs = [{"ranking": name, "AUC": round(report.auc[name], 4)} for name in report.curves if name in keep]
    aucs.append({"ranking": f"random orders (mean of {report.n_random})", "AUC": round(report.auc[RANDOM], 4)})
    left, right = st.columns([2, 3])
    left.dataframe(pd.DataFrame(aucs), hide_index=True, width="stretch")
    with right:
        st.caption("A good ranking destroys performance fastest when the most important units go first (low AUC) "
                   "and keeps it longest when the least important go first (high AUC). Shapley values average a "
                   "unit's contribution over coalitions of every size; these curves remove units from the full "
                   "network, so units that stand in for each other can matter more together than their values say.")
        for key, why in report.skipped.items():
            st.caption(f"{RANKINGS[key]}: not available for this model ({why}).")
