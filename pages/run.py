"""Run page: choose units, objective, lesion, estimator and budget; see the cost; launch a background run
with live progress; open cached runs."""

import time

import pandas as pd
import streamlit as st

from msa_core.editor import planned_evaluations
from msa_core.estimators import MAX_EXACT_PLAYERS, METHODS
from ui import resources, state
from ui.backend import RunSpec, describe_units
from ui.errors import message, shown

state.page_setup()
st.title("Run")

subject = None
with shown(f"Loading model {state.model()!r}"):
    subject = resources.subject(*state.choice())
if subject is None:
    st.stop()

st.caption(f"Model **{subject.name}**. A run lesions random combinations of the chosen units and estimates "
           "each unit's Shapley value of the objective.")

# ------------------------------------------------------------------ the job in progress
job_id = st.session_state.get(state.JOB)


@st.fragment(run_every=0.5)
def job_panel(job: str) -> None:
    """Live progress of the background job (reruns every 0.5 s on its own)."""
    try:
        status = resources.runner().status(job)
    except Exception as error:  # noqa: BLE001
        st.error(f"Lost track of the run: {message(error)}")
        st.session_state.pop(state.JOB, None)
        return
    if status.active:
        eta = f"{status.eta_s:.0f} s left" if status.eta_s is not None else "estimating time left"
        st.progress(status.fraction, text=f"{status.state}: {status.done:,} / {status.total:,} evaluations · "
                                          f"{status.evals_per_s:,.0f} evaluations/s · {eta}")
        if st.button("Cancel the run", icon=":material/cancel:", key=f"cancel_{job}"):
            resources.runner().cancel(job)
        return
    st.session_state.pop(state.JOB, None)
    if status.state == "done":
        state.set_run(status.run_id)
        st.session_state["msa_last_done"] = status.run_id
        st.rerun()
    elif status.state == "cancelled":
        st.session_state["msa_last_note"] = ("warning", "The run was cancelled; its progress is checkpointed and "
                                             "launching it again resumes it.")
        st.rerun()
    else:
        st.session_state["msa_last_note"] = ("error", f"The run failed: {status.error or 'unknown error'}")
        st.rerun()


if job_id:
    job_panel(job_id)
note = st.session_state.pop("msa_last_note", None)
if note:
    (st.error if note[0] == "error" else st.warning)(note[1])
done_id = st.session_state.get("msa_last_done")
if done_id and done_id == state.run_id():
    st.success(f"Run {done_id[:8]} is ready.")
    c1, c2, c3 = st.columns(3)
    c1.page_link("pages/modes.py", label="Open its Shapley modes", icon=":material/grid_view:")
    c2.page_link("pages/lesion_curves.py", label="Lesion curves", icon=":material/trending_down:")
    c3.page_link("pages/editor.py", label="Edit the model", icon=":material/ads_click:")

# ------------------------------------------------------------------ the form
layer_paths = [layer.path for layer in subject.layers]
presets = dict(subject.unit_presets or {})
choices = ["default"] + list(presets) + ["custom layers"]
left, right = st.columns(2)
with left:
    pick = st.radio("Units", choices, horizontal=True, key=f"units_mode_{state.model()}",
                    format_func=lambda c: f"default ({describe_units(subject.default_units)})" if c == "default" else c)
    units = None
    if pick == "custom layers":
        picked = st.multiselect("Layers", layer_paths, default=[], key=f"units_layers_{state.model()}",
                                help="Every unit of each chosen layer is a player.")
        units = tuple(picked) if picked else None
        if not picked:
            st.info("Choose at least one layer (or use the default units).")
    elif pick != "default":
        units = (pick,)
    objectives = list(subject.objectives)
    objective = st.selectbox("Objective", objectives, index=objectives.index(subject.default_objective)
                             if subject.default_objective in objectives else 0, key=f"objective_{state.model()}")
    lesion = st.selectbox("Lesion", ["zero", "mean", "skip"],
                          index=["zero", "mean", "skip"].index(getattr(subject, "default_lesion", "zero")),
                          help="zero: set the unit's activation to 0; mean: to its mean over the inputs; "
                               "skip: -inf (remove an expert from routing). Experts are always skipped.")
with right:
    methods = list(METHODS)
    method = st.selectbox("Estimator", methods, index=methods.index("permutation") if "permutation" in methods else 0,
                          help="permutation: random join orders; antithetic: each order with its reverse; owen: "
                               "stratified; exact: all 2^n coalitions (n <= 20).")
    n_perm = st.number_input("Budget (permutations)", min_value=1, max_value=100_000, value=20, step=10,
                             disabled=method == "exact")
    seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0)
    label = st.text_input("Label (optional)", value="")

n_players = None
rate = None
with shown("Estimating the cost"):
    rate, n_players = resources.throughput(state.model(), resources.game_units(subject, units), objective, lesion,
                                           state.inputs())
if n_players is not None:
    too_big = method == "exact" and n_players > MAX_EXACT_PLAYERS
    evaluations = planned_evaluations(method, n_players, int(n_perm)) if not too_big else None
    c1, c2, c3 = st.columns(3)
    c1.metric("Players (units)", n_players)
    c2.metric("Evaluations", f"{evaluations:,}" if evaluations else "too many")
    c3.metric("Expected time", f"{evaluations / rate:.1f} s" if evaluations and rate else "n/a",
              help=f"Measured here at {rate:,.0f} evaluations/s." if rate else None)
    if too_big:
        st.error(f"Exact values need 2^{n_players} coalitions: choose at most {MAX_EXACT_PLAYERS} units or a "
                 "sampling estimator.")
    launch = st.button("Launch the run", type="primary", icon=":material/play_arrow:",
                       disabled=too_big or bool(job_id) or (pick == "custom layers" and units is None))
    if launch:
        spec = RunSpec(model=state.model(), units=units, objective=objective, lesion=lesion, method=method,
                       n_permutations=int(n_perm), seed=int(seed), label=label, inputs=state.inputs())
        with shown("Launching the run"):
            st.session_state[state.JOB] = resources.runner().submit(spec)
            st.session_state[state.JOB_SPEC] = spec
            st.rerun()

# ------------------------------------------------------------------ cached runs
st.markdown("#### Stored runs of this model")
records = resources.runs_for(*state.choice())
if not records:
    st.caption("None yet: launch one above (the default budget finishes in seconds).")
else:
    table = pd.DataFrame([
        {"run": r.id[:8], "label": r.label, "units": describe_units(r.spec.units), "objective": r.spec.objective or "default",
         "lesion": r.spec.lesion, "method": r.spec.method,
         "budget": r.spec.n_permutations if r.spec.method != "exact" else "exact",
         "seconds": round(float(r.elapsed_s or 0.0), 2),
         "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))}
        for r in records
    ])
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key=f"runs_table_{state.model()}_{len(records)}")
    rows = event.selection.rows if event is not None else []
    if rows:
        chosen = records[rows[0]]
        if chosen.id != state.run_id():
            state.set_run(chosen.id)
            st.rerun()
    if state.run_id():
        st.caption(f"Selected run: {state.run_id()[:8]}. Open it on the Modes, Lesion curves or Editor page.")
