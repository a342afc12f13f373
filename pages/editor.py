"""Editor page (click-to-lesion): toggle units on a grid coloured by Shapley value and watch the output change;
presets (top-k, bottom-k, clear); export the lesion mask and a pruned copy of the model."""

import base64
import time

import numpy as np
import pandas as pd
import streamlit as st

from msa_core import editor as ed
from msa_core import editor_display as display
from msa_core import editor_units as eu
from msa_core import figures
from msa_core import live_views as live
from msa_core import lm_views as lm
from ui import resources, state
from ui.errors import message, shown

state.page_setup()
st.title("Editor")

subject = None
with shown(f"Loading model {state.model()!r}"):
    subject = resources.subject(*state.choice(), state.tasks())
if subject is None:
    st.stop()

record = resources.record(state.run_id())
run_units = (record.spec.units or ((record.spec.preset,) if record.spec.preset else None)) if record else None
units = resources.game_units(subject, run_units) if record else ()
lesion = record.spec.lesion if record else None
editor = None
with shown("Preparing the editor"):
    editor = resources.editor(state.model(), units, lesion, inputs=state.inputs(), tasks=state.tasks())
if editor is None:
    st.stop()

values = None
if record is not None and record.result.n_players == editor.n_units:
    with shown("Reading the run's totals"):  # an on-disk run: a range of units at a time, once per run
        values = eu.unit_totals(record.result)
    if values is None:
        st.stop()
    st.caption(f"Units coloured by their total Shapley value in run {record.id[:8]} (red helps, blue hurts). "
               "Click a unit to lesion it, click again to restore it.")
else:
    values = np.zeros(editor.n_units)
    st.info("No run selected: units are not coloured and the top-k presets are off. Launch a run on the Run page "
            "to colour them by Shapley value. You can still click units to lesion them.")
key = f"{state.model()}|{state.inputs() or ''}|{record.id if record else 'default'}"
labels = editor.unit_labels
if key not in st.session_state.get(state.LESIONED, {}):  # first visit of these units: a link's lesion set
    with shown("Reading the lesion set in the link"):
        linked = [int(u) for u in (state.url_value("lesioned") or "").split(",") if u.strip()]
        if any(not 0 <= u < editor.n_units for u in linked):
            raise ValueError(f"the link lesions units outside 0..{editor.n_units - 1}")
        state.set_lesioned(key, linked)


def keep_in_url() -> None:
    """The lesion set in the URL (unit indices), so a copied link reopens the same edit."""
    state.set_url_value("lesioned", state.encode(state.lesioned(key)) or None)


def toggle(chart_key: str) -> None:
    """Grid click callback: toggle the clicked unit, then give the grid a fresh key (clears its selection)."""
    selection = st.session_state.get(chart_key)
    points = selection.selection.points if selection is not None else []
    for point in points[:1]:
        unit = point.get("customdata", point.get("point_index"))
        if isinstance(unit, (list, tuple)):
            unit = unit[0]
        if unit is not None and 0 <= int(unit) < editor.n_units:
            state.set_lesioned(key, sorted(set(state.lesioned(key)) ^ {int(unit)}))
    st.session_state[state.GRID_VERSION] = st.session_state.get(state.GRID_VERSION, 0) + 1


def inline_png(png: bytes, alt: str, test_id: str, outputs) -> None:
    """One image pixel per PNG pixel, inline (no second request for a media file), enlarged crisp by the browser
    to the column's width, at most 3x (one 128x128 image does not fill the screen)."""
    n_images, width = min(8, int(outputs.shape[0])), int(outputs.shape[-1])
    st.html(f'<img alt="{alt}" data-testid="{test_id}" src="data:image/png;base64,{base64.b64encode(png).decode()}" '
            f'style="width: 100%; max-width: {3 * n_images * (width + 1)}px; image-rendering: pixelated; '
            'border-radius: 4px">')


def output_panel(base: ed.EditorOutput, edited: ed.EditorOutput) -> None:
    """The live output: images side by side, or scores intact vs edited."""
    change = float((edited.outputs - base.outputs).abs().mean())
    c1, c2, c3 = st.columns(3)
    c1.metric("Lesioned units", len(edited.lesioned))
    c2.metric("Output change", f"{change:.4f}", help="mean |edited - intact| over the raw model output")
    c3.metric("Evaluation", f"{edited.elapsed_s * 1000:.0f} ms" if edited.elapsed_s else "cached")
    if subject.output_kind == "image":
        lo, hi = display.image_range(editor.game.model, base.outputs)
        png, limit = live.image_comparison_png(base.outputs, edited.outputs, n_show=8, scale=1, gap=1,
                                               value_range=(lo, hi))
        inline_png(png, "intact, edited and difference images", "msaOutputImage", base.outputs)
        if figures.is_rgb_output(base.outputs.shape):
            st.caption(f"Rows: intact, edited (each colour channel from {lo:.3g} to {hi:.3g}), difference (edited - "
                       f"intact per channel: mid-grey = no change, a colour brighter where it rose, darker where it "
                       f"fell; |difference| up to {limit:.3g}).")
        else:
            st.caption(f"Rows: intact, edited (grey scale: black {lo:.3g}, white {hi:.3g}), difference (edited - "
                       f"intact; blue < 0 < red, |difference| up to {limit:.3g}).")
    for name, score in edited.scores.items():
        if score.numel() > 64:  # image-shaped scores are already shown as images
            continue
        before = base.scores[name]
        label_list = None
        try:
            label_list = subject.objective_labels(name)
        except Exception:  # noqa: BLE001 - labels are optional
            pass
        if score.numel() > 1:
            if "probability" not in name:  # mean class probability is always 1 / n_classes
                st.metric(f"Mean {name}", f"{float(score.mean()):.3f}", delta=f"{float(score.mean() - before.mean()):+.3f}")
            axis = figures.output_axis_title(subject.objective_kind(name), label_list)
            st.echarts_chart(live.score_comparison_option(before, score, labels=label_list, title=name, y_title=name,
                                                          x_title=axis),
                             key=f"editor_score_{name}", height=300)
        else:
            st.metric(name, f"{float(score):.4f}", delta=f"{float(score - before):+.4f}")
    words = (subject.samples or {}).get("words")
    if words and any(name.startswith("token") for name in subject.objectives):
        token_name = next(name for name in subject.objectives if name.startswith("token"))
        word = state.url_widget(st.selectbox, "Token probabilities of the word", "word", options=list(words),
                                default=list(words)[0])
        token_editor = resources.editor(state.model(), units, lesion, f"{token_name}:{word}", inputs=state.inputs())
        t_base, t_edit = token_editor.intact, token_editor.evaluate(edited.lesioned)
        tokens = subject.objective_labels(f"{token_name}:{word}") or [str(i) for i in range(t_base.outputs.numel())]
        st.echarts_chart(live.token_probability_option(tokens, t_base.outputs.exp(), t_edit.outputs.exp(),
                                                       title=f"p(next token) for '{word}'"), key="editor_tokens",
                         height=300)


def prediction_panel(edited: ed.EditorOutput) -> None:
    """The run's Shapley prediction of the current lesions (intact minus the lesioned units' modes, read unit by
    unit from the run) against the lesioned model's actual output."""
    result = record.result
    cached = st.session_state.get("editor_prediction")
    if cached is None or cached[0] != record.id:
        cached = (record.id, eu.ShapleyPrediction(result))
        st.session_state["editor_prediction"] = cached
    predicted = cached[1].lesioned_output(editor.intact.outputs, edited.lesioned)
    actual = edited.outputs.double()
    # the page's last comparison, for tests and debugging: (lesioned, predicted, actual) outputs
    st.session_state["editor_view"] = {"lesioned": edited.lesioned, "predicted": predicted, "actual": actual}
    error = float((predicted - actual).abs().mean())
    change = float((actual - editor.intact.outputs.double()).abs().mean())
    st.markdown("#### Shapley prediction")
    m1, m2 = st.columns(2)
    m1.metric("Prediction error", f"{error:.4f}", help="mean |predicted - actual| of the lesioned output, where "
              "predicted = intact - the sum of the lesioned units' Shapley modes")
    m2.metric("Actual change", f"{change:.4f}", help="mean |actual - intact|")
    if subject.output_kind == "image":
        png, limit = live.image_comparison_png(actual, predicted, n_show=8, scale=1, gap=1,
                                               value_range=display.image_range(editor.game.model, editor.intact.outputs))
        inline_png(png, "actual and predicted lesioned images", "msaPredictionImage", actual)
        shift = (" per channel: mid-grey = none, a colour brighter where the prediction is higher"
                 if figures.is_rgb_output(actual.shape) else "; blue < 0 < red")
        st.caption(f"Rows: actual lesioned output, the Shapley prediction (intact - sum of the lesioned units' "
                   f"modes), difference (predicted - actual{shift}, |difference| up to {limit:.3g}).")
    elif actual.numel() <= 64:
        st.echarts_chart(live.score_comparison_option(actual, predicted, title="actual vs predicted output",
                                                      y_title="output"), key="editor_prediction_bars", height=260)


def lm_panel(lesioned_now: list[int]) -> None:
    """A language model's per-task scores (with a battery) and the greedy continuation of a prompt, intact and
    with the current lesions side by side; recomputed on every click (one batch of two rows per token)."""
    st.markdown("#### Language model")
    words = (subject.samples or {}).get("words") or []
    default_prompt = (state.text() or "")[:24] or (words[0][:3] if words else "The")
    prompt = state.url_widget(st.text_input, "Prompt to continue (8 greedy tokens)", "prompt", default=default_prompt)
    tasks_game = None
    if state.tasks():
        tasks_game = resources.tasks_game(state.model(), units, lesion, state.inputs(), state.tasks())
    view = lm.lm_edit(subject, lesioned_now, prompt=prompt, editor_game=editor.game, tasks_game=tasks_game)
    continuation = view["continuation"]
    if continuation is not None:
        c1, c2 = st.columns(2)
        c1.markdown("**Intact**")
        c1.code(continuation.prompt + continuation.intact, language=None, wrap_lines=True)
        c2.markdown(f"**With {len(lesioned_now)} lesioned**")
        c2.code(continuation.prompt + continuation.lesioned, language=None, wrap_lines=True)
        if continuation.intact == continuation.lesioned:
            st.caption("Same continuation both ways.")
    scores = view["tasks"]
    if scores is not None:
        st.echarts_chart(live.score_comparison_option(scores["intact"], scores["lesioned"], labels=scores["task"],
                                                      title="per-task score", y_title="score", x_title="task"),
                         key="editor_task_scores", height=300)
        with st.expander("Per-task scores as a table"):
            st.dataframe(pd.DataFrame({"task": scores["task"], "intact": scores["intact"],
                                       "edited": scores["lesioned"]}), hide_index=True, width="stretch",
                         key="editor_task_table")


def export_panel() -> None:
    """Mask export (JSON, npz) and a pruned copy, always of the current lesions (it reruns with the grid)."""
    st.markdown("#### Export")
    lesioned_now = state.lesioned(key)
    meta = {"model": state.model(), "inputs": state.inputs(), "run": record.id if record else None,
            "lesion": lesion or "default"}
    e1, e2, e3 = st.columns(3)
    # callables: the mask files are built when downloaded, not on every click of the grid
    e1.download_button("Lesion mask (JSON)", lambda: ed.mask_to_json(labels, lesioned_now, **meta),
                       file_name="lesion_mask.json",
                       mime="application/json", icon=":material/download:", on_click="ignore")
    e2.download_button("Lesion mask (npz)", lambda: ed.mask_to_npz(labels, lesioned_now, **meta),
                       file_name="lesion_mask.npz",
                       mime="application/octet-stream", icon=":material/download:", on_click="ignore")
    if e3.button("Prepare a pruned model", icon=":material/content_cut:", disabled=not lesioned_now):
        try:
            pruned = ed.pruned_model(editor.game.model, editor.game.resolved, lesioned_now)
            st.session_state["editor_pruned"] = (tuple(lesioned_now), ed.pruned_bytes(pruned, metadata=meta))
        except Exception as error:  # noqa: BLE001
            st.error(f"Pruning failed: {message(error)}")
    prepared = st.session_state.get("editor_pruned")
    if prepared and list(prepared[0]) == lesioned_now:
        st.download_button("Download the pruned model (safetensors)", prepared[1], file_name="pruned.safetensors",
                           mime="application/octet-stream", icon=":material/download:")
        st.caption("Weights of the lesioned units are zeroed (skipped experts get a -inf router bias). Load it back with "
                   "`msa_core.editor.load_pruned(path)` (built-in architectures) or `load_pruned(path, model)`.")


@st.fragment
def editor_body() -> None:
    """Grid, presets and live output; a click reruns only this fragment."""
    lesioned = state.lesioned(key)
    p1, p2, p3, p4 = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    k = state.url_widget(p1.number_input, "k (units per preset)", "top_k", default=min(5, editor.n_units),
                         min_value=1, max_value=max(1, editor.n_units), step=1,
                         help="How many units the top-k and bottom-k presets lesion.")
    has_values = record is not None and bool(np.any(values))
    if p2.button(f"Lesion top-{k}", disabled=not has_values, width="stretch"):
        state.set_lesioned(key, ed.top_k(values, int(k)))
    if p3.button(f"Lesion bottom-{k}", disabled=not has_values, width="stretch"):
        state.set_lesioned(key, ed.bottom_k(values, int(k)))
    if p4.button("Clear", width="stretch"):
        state.set_lesioned(key, [])
    lesioned = state.lesioned(key)
    keep_in_url()
    left, right = st.columns([2, 3])
    with right:  # the output first: its deltas reach the browser before the grid's
        started = time.perf_counter()
        edited = None
        with shown("Evaluating the edited model"):
            edited = editor.evaluate(lesioned)
            output_panel(editor.intact, edited)
        if lm.is_language_model(subject):
            with shown("Scoring the language model"):
                lm_panel(lesioned)
        st.session_state["editor_last_ms"] = (time.perf_counter() - started) * 1000
        if edited is not None and record is not None and eu.prediction_applies(record.result,
                                                                                  editor.intact.outputs.shape):
            with shown("Reading the lesioned units' modes"):
                prediction_panel(edited)
    with left:
        views = eu.grid_views(labels, values)
        shown_units = views[0].units
        if len(views) > 1:  # a large game: one layer (a page of it) or the top units at a time
            names = [view.name for view in views]
            name = state.url_widget(st.selectbox, f"Units shown ({editor.n_units:,} in all)", "view", options=names,
                                    default=names[0], help="The grid draws at most "
                                    f"{eu.GRID_LIMIT} units at once: the top units by |Shapley value| or a layer.")
            shown_units = views[names.index(name)].units
        chart_key = f"editor_grid_{key}_{st.session_state.get(state.GRID_VERSION, 0)}"
        # the colour scale of the units shown: one layer's values may be small next to another's
        grid, scale = display.grid_figure(values[list(shown_units)], lesioned, shown_units,
                                     [labels[i] for i in shown_units])
        st.plotly_chart(grid, key=chart_key, on_select=lambda: toggle(chart_key), selection_mode="points",
                        config={"displayModeBar": False})
        if scale.caption:
            st.caption(scale.caption)
        named = ", ".join(labels[i] for i in lesioned[:40]) + (f", ... ({len(lesioned)} in all)" if len(lesioned) > 40 else "")
        st.caption("Lesioned: " + (named if lesioned else "none"))
    export_panel()


editor_body()

with st.expander("Import a lesion mask"):
    upload = st.file_uploader("Mask file (.json or .npz from this page)", type=["json", "npz"], key="editor_mask_upload")
    if upload is not None and st.button("Apply the mask"):
        with shown("Reading the mask"):
            mask_labels, mask_lesioned = ed.load_mask(upload.getvalue())
            if mask_labels != labels:
                raise ValueError("the mask was made for other units "
                                 f"({len(mask_labels)} units, first {mask_labels[:1]}) than these ({len(labels)})")
            state.set_lesioned(key, mask_lesioned)
            st.rerun()
