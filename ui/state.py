"""Session-state keys and the sync between session state and the URL (``st.query_params``).

The URL holds the current model (``?model=``), its example-inputs file when it has one
(``&inputs=``: TorchScript files need one) and run (``&run=``); the page is the URL path of
``st.navigation``. A link therefore reopens the same view for a collaborator on the same server.
"""

from __future__ import annotations

import streamlit as st

MODEL = "msa_model"
INPUTS = "msa_inputs"
RUN = "msa_run"
JOB = "msa_job"
JOB_SPEC = "msa_job_spec"
LESIONED = "msa_lesioned"
GRID_VERSION = "msa_grid_version"
EXTRA_MODELS = "msa_extra_models"
DEFAULT_MODEL = "mlp-digits"


def init() -> None:
    """Seed session state from the URL once per session."""
    state = st.session_state
    if state.get("_msa_init"):
        return
    params = st.query_params
    state[MODEL] = params.get("model") or DEFAULT_MODEL
    state[INPUTS] = params.get("inputs") or None
    state[RUN] = params.get("run") or None
    state[EXTRA_MODELS] = [(state[MODEL], state[INPUTS])]
    state["_msa_init"] = True


def model() -> str:
    """The current model reference."""
    return st.session_state.get(MODEL) or DEFAULT_MODEL


def inputs() -> str | None:
    """The current model's example-inputs file (None: the model's own inputs)."""
    return st.session_state.get(INPUTS) or None


def choice() -> tuple[str, str | None]:
    """``(model reference, inputs file or None)``: what the sidebar's model picker holds."""
    return model(), inputs()


def choice_label(model_and_inputs: tuple[str, str | None]) -> str:
    """Short text for a (model, inputs) choice: file names rather than full paths."""
    from pathlib import Path

    ref, inputs_file = model_and_inputs
    name = Path(ref).name if ("/" in ref or "\\" in ref) and ":" not in Path(ref).name else ref
    return name if not inputs_file else f"{name} + {Path(inputs_file).name}"


def run_id() -> str | None:
    """The current run id (None: no run selected)."""
    return st.session_state.get(RUN)


def set_model(ref: str, inputs_file: str | None = None) -> None:
    """Switch model (and its example-inputs file): forgets the run and the editor's lesions."""
    inputs_file = inputs_file or None
    if st.session_state.get(MODEL) != ref or (st.session_state.get(INPUTS) or None) != inputs_file:
        st.session_state[MODEL] = ref
        st.session_state[INPUTS] = inputs_file
        st.session_state[RUN] = None
        st.session_state[LESIONED] = {}
    extra = st.session_state.setdefault(EXTRA_MODELS, [])
    if (ref, inputs_file) not in extra:
        extra.append((ref, inputs_file))


def set_run(run: str | None) -> None:
    """Select a run (None: none)."""
    st.session_state[RUN] = run


def sync_query() -> None:
    """Write the current model and run into the URL (only when they changed)."""
    wanted = {"model": model()}
    if inputs():
        wanted["inputs"] = inputs()
    if run_id():
        wanted["run"] = run_id()
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def lesioned(key: str) -> list[int]:
    """The editor's lesioned units for one (model, units) key."""
    return st.session_state.setdefault(LESIONED, {}).setdefault(key, [])


def set_lesioned(key: str, units: list[int]) -> None:
    """Replace the editor's lesioned units for one key."""
    st.session_state.setdefault(LESIONED, {})[key] = sorted({int(u) for u in units})


APP_RUNNING = "_msa_app_running"
_HEALING = "_msa_heal_pending"


def page_setup() -> None:
    """First call of every page script: make sure the page runs inside ``app.py``.

    Streamlit treats a ``pages/`` folder as a legacy multipage app until ``st.navigation`` has been
    called once in the process; the very first request for a deep link (``/editor?...``) then runs the
    page script alone, without the app's sidebar and settings. When that happens the page asks for a
    rerun, which goes through ``app.py`` (once: no loop if it still does not).
    """
    if not st.session_state.get(APP_RUNNING):
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
        if not st.session_state.get(_HEALING):
            st.session_state[_HEALING] = True
            st.rerun()
    st.session_state[_HEALING] = False
    init()
