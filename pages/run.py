"""Run page: choose units, objective, lesion, estimator and budget; see the cost; launch a background run
with live progress; open cached runs."""

import time

import pandas as pd
import streamlit as st

from msa_core import lm_views as lm
from msa_core.estimators import MAX_EXACT_PLAYERS, METHOD_DESCRIPTIONS, METHODS
from ui import resources, run_ray, state
from ui.backend import RunSpec, describe_units, progress_text, run_budget
from ui.errors import message, shown
from ui.run_cost import automatic_bound_text, memory_bound, run_cost, run_plan

DEFAULT_BUDGET = 2_000  # game evaluations: seconds on the built-in models

state.page_setup()
st.title("Run")

subject = None
with shown(f"Loading model {state.model()!r}"):
    subject = resources.subject(*state.choice(), state.tasks())
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
        st.progress(status.fraction if status.total else 0.0, text=progress_text(status))
        if st.button("Cancel the run", icon=":material/cancel:", key=f"cancel_{job}"):
            resources.runner().cancel(job)
        return
    st.session_state.pop(state.JOB, None)
    if status.state == "done":
        state.set_run(status.run_id)
        st.session_state["msa_last_done"] = status.run_id
        st.session_state["msa_last_on_disk"] = bool(status.on_disk)
        st.session_state["msa_last_computed"] = (("It was already stored. " if status.cached else "")
                                                 + run_ray.computed_text(resources.record(status.run_id)))
        st.rerun()
    elif status.state == "cancelled":
        st.session_state["msa_last_note"] = ("warning", "The run was cancelled; its progress is checkpointed and "
                                             "launching it again resumes it.")
        st.rerun()
    else:
        st.session_state["msa_last_note"] = ("error", "The run failed: "
                                             f"{run_ray.hide_address(status.error) or 'unknown error'}")
        st.rerun()


if job_id:
    job_panel(job_id)
note = st.session_state.pop("msa_last_note", None)
if note:
    (st.error if note[0] == "error" else st.warning)(note[1])
done_id = st.session_state.get("msa_last_done")
if done_id and done_id == state.run_id():
    st.success(f"Run {done_id[:8]} is ready. {st.session_state.get('msa_last_computed', '')}".rstrip()
               + (" Its values stay on disk (streamed within the memory bound); every page reads them a range "
                  "at a time." if st.session_state.get("msa_last_on_disk") else ""))
    c1, c2, c3 = st.columns(3)
    c1.page_link("pages/modes.py", label="Open its Shapley modes", icon=":material/grid_view:")
    c2.page_link("pages/lesion_curves.py", label="Lesion curves", icon=":material/trending_down:")
    c3.page_link("pages/editor.py", label="Edit the model", icon=":material/ads_click:")

# ------------------------------------------------------------------ the form (every setting in the URL)
layer_paths = [layer.path for layer in subject.layers]
presets = dict(subject.unit_presets or {})
choices = ["default"] + list(presets) + ["custom layers"]
left, right = st.columns(2)
with left:
    pick = state.url_widget(st.radio, "Units", "units", options=choices, default="default", horizontal=True,
                            format_func=lambda c: f"default ({describe_units(subject.default_units)})"
                            if c == "default" else c)
    units, preset = None, None
    if pick == "custom layers":
        picked = state.url_widget(st.multiselect, "Layers", "layers", options=layer_paths, default=[],
                                  help="Every unit of each chosen layer is a player.")
        units = tuple(picked) if picked else None
        if not picked:
            st.info("Choose at least one layer (or use the default units).")
    elif pick != "default":
        preset = pick
    objectives = lm.run_objectives(subject, state.text())  # a typed text: "text:<text>"; a battery: "tasks"
    objective = state.url_widget(st.selectbox, "Objective", "objective", options=objectives,
                                 default=subject.default_objective if subject.default_objective in objectives
                                 else objectives[0])
    lesion = state.url_widget(st.selectbox, "Lesion", "lesion", options=["zero", "mean", "skip"],
                              default=getattr(subject, "default_lesion", "zero"),
                              help="zero: set the unit's activation to 0; mean: to its mean over the inputs; "
                                   "skip: -inf (remove an expert from routing). Experts are always skipped.")
with right:
    methods = list(METHODS)
    method = state.url_widget(st.selectbox, "Estimator", "method", options=methods,
                              default="auto" if "auto" in methods else "permutation",
                              format_func=lambda m: f"{m}: {METHOD_DESCRIPTIONS.get(m, '')}".rstrip(": "),
                              help="How the Shapley values are estimated; every method spends the same budget "
                                   "of game evaluations.")
    st.caption(f"**{method}**: {METHOD_DESCRIPTIONS.get(method, '')}")
    options = {}
    if method == "topk":
        options["k"] = int(state.url_widget(st.number_input, "k (how many top units to settle)", "k", default=5,
                                            min_value=1, max_value=10_000, step=1,
                                            help="topk stops once it knows which k units have the largest "
                                                 "values; the others' values stay rough."))
    budget = state.url_widget(st.number_input, "Budget (game evaluations)", "budget", default=DEFAULT_BUDGET,
                              min_value=1, max_value=100_000_000, step=500, disabled=method == "exact",
                              help="Coalitions of lesioned units the model is run on. Exact values need 2^n.")
    seed = state.url_widget(st.number_input, "Seed", "seed", default=0, min_value=0, max_value=2**31 - 1)
    label = state.url_widget(st.text_input, "Label (optional)", "label", default="")
    bound_text = state.url_widget(st.text_input, "Memory bound (optional)", "max_memory", default="",
                                  placeholder="automatic", help="Bound on the run's working arrays, e.g. 4GB or "
                                  "512MB; empty: automatic. Under a tight bound the sampling methods stream one "
                                  "sample at a time and keep their accumulators and result on disk, with the same "
                                  "values. It does not change the run: a stored run is found whatever its bound.")
    max_memory, bound_error = memory_bound(bound_text)
    if bound_error:
        st.error(bound_error)
    elif max_memory is None:
        st.caption(automatic_bound_text())
    ray_setting, ray_submit, ray_error = run_ray.server_ray(), {}, None
    if ray_setting["offered"]:
        backend = state.url_widget(st.radio, "Backend", "backend", options=list(run_ray.BACKENDS), default="local",
                                   horizontal=True, help="local: computed in this server's process. ray: the game's "
                                   "evaluations spread over the workers of " + ("the server's Ray cluster"
                                   if ray_setting["address"] else "a Ray instance this server runs") + "; the "
                                   "values equal a local run's with the same seed.")
        if backend == "ray" and not run_ray.accumulates_samples(method, options):
            st.caption(f"**{method}** is not a sampling method: Ray spreads its evaluations over the workers and "
                       "the driver keeps the values (no accumulate mode).")
            ray_submit = run_ray.submit_options(backend)
        elif backend == "ray":
            mode = state.url_widget(st.radio, "Ray accumulate", "ray_accumulate", options=list(run_ray.ACCUMULATE),
                                    default="auto", captions=list(run_ray.ACCUMULATE.values()))
            units_text = ""
            if mode != "driver":
                units_text = state.url_widget(st.text_input, "Units per task (optional)", "ray_units", default="",
                                              placeholder="automatic", help="Join orders (or antithetic pairs, Owen "
                                              "units) per worker task when accumulating on the workers; more units "
                                              "per task return fewer bytes. Empty: four rounds over the workers.")
            per_task, ray_error = run_ray.units_per_task(units_text)
            if ray_error:
                st.error(ray_error)
            ray_submit = run_ray.submit_options(backend, mode, per_task)
    else:
        asked = run_ray.link_asks_for_ray()  # keeps the link's Ray parameters; the run computes locally
        if asked or ray_setting["note"]:
            (st.warning if asked else st.caption)(ray_setting["note"] or run_ray.not_offered_notice())

spec = RunSpec(model=state.model(), units=units, preset=preset, objective=objective, lesion=lesion, method=method,
               budget=int(budget), options=options, seed=int(seed), label=label,
               inputs=state.inputs(), tasks=state.tasks())
cost, n_players, too_big = None, None, False
incomplete = pick == "custom layers" and units is None
with shown("Estimating the cost"):
    if not incomplete and not bound_error:
        n_players = run_plan(spec)["n_players"]
        too_big = method == "exact" and n_players > MAX_EXACT_PLAYERS
        if not too_big:
            cost = run_cost(spec, max_memory=max_memory)
memory = cost["memory"] if cost else None
refused = bool(memory and memory["error"])
if cost is not None or too_big:
    c1, c2, c3 = st.columns(3)
    c1.metric("Players (units)", cost["n_players"] if cost else n_players)
    c2.metric("Evaluations", f"{cost['evaluations']:,}" if cost else "too many",
              help="an adaptive method's cap" if method == "topk" else None)
    if cost and not refused:
        low, high = cost["seconds_low"], cost["seconds_high"]
        c3.metric("Expected time", f"{low:.1f} s" if cost["complete"] or high - low < 0.05 * high + 0.05
                  else f"{low:.1f} to {high:.1f} s",
                  help=f"From timing real batches of this run here ({cost['evaluations_per_second']:,.0f} "
                       "evaluations/s)." + (" The probe finished the whole run: that is its measured time."
                                           if cost["complete"] else "")
                  + (" Timed in this process: a Ray run spreads the evaluations over its workers." if ray_submit
                     else ""))
    if too_big:
        st.error(f"Exact values need 2^{n_players} coalitions: choose at most {MAX_EXACT_PLAYERS} units or a "
                 "sampling estimator.")
if memory:
    if refused:
        st.error(f"Memory: {memory['text']}")
    else:
        (st.info if memory["on_disk"] else st.caption)(f"Memory: {memory['text']}.")
launch = st.button("Launch the run", type="primary", icon=":material/play_arrow:",
                   disabled=too_big or bool(job_id) or incomplete or bool(bound_error) or refused
                   or bool(ray_error))
if launch:
    with shown("Launching the run"):
        st.session_state[state.JOB] = resources.runner().submit(spec, max_memory=max_memory, **ray_submit)
        st.session_state[state.JOB_SPEC] = spec
        st.rerun()

# ------------------------------------------------------------------ cached runs
st.markdown("#### Stored runs of this model")
records = resources.runs_for(*state.choice())
if not records:
    st.caption("None yet: launch one above (the default budget finishes in seconds).")
else:
    table = pd.DataFrame([
        {"run": r.id[:8], "label": r.label, "units": r.spec.preset or describe_units(r.spec.units), "objective": r.spec.objective or "default",
         "lesion": r.spec.lesion, "method": r.spec.method,
         "budget": run_budget(r.spec), "method options": ", ".join(f"{k}={v}" for k, v in r.spec.options) or "",
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
