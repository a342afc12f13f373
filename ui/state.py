"""Session-state keys and the sync between session state and the URL (``st.query_params``).

The URL holds the current model (``?model=``), its example-inputs file when it has one
(``&inputs=``: TorchScript files need one), run (``&run=``), a language model's task-battery file
(``&tasks=``: a content-addressed copy under ``$MSA_HOME/uploads``, or a shipped one) and the user's
text (``&text=``); the page is the URL path of
``st.navigation``. Every setting a page offers is bound to a query parameter of its own with
:func:`url_widget` (widgets) or :func:`url_value` / :func:`set_url_value` (other state, e.g. the
editor's lesion set), so a link opened in a fresh browser reopens exactly the same view. Values
equal to their default are left out of the URL, and parameters of other pages are dropped at the
end of each run (:func:`sync_query`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import streamlit as st

MODEL = "msa_model"
INPUTS = "msa_inputs"
RUN = "msa_run"
JOB = "msa_job"
JOB_SPEC = "msa_job_spec"
LESIONED = "msa_lesioned"
GRID_VERSION = "msa_grid_version"
EXTRA_MODELS = "msa_extra_models"
TASKS = "msa_tasks"
TEXT = "msa_text"
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
    state[TASKS] = params.get("tasks") or None
    state[TEXT] = params.get("text") or None
    state[EXTRA_MODELS] = [(state[MODEL], state[INPUTS])]
    state["_msa_init"] = True


def model() -> str:
    """The current model reference."""
    return st.session_state.get(MODEL) or DEFAULT_MODEL


def inputs() -> str | None:
    """The current model's example-inputs file (None: the model's own inputs)."""
    return st.session_state.get(INPUTS) or None


def tasks() -> str | None:
    """The current language model's task-battery file (a path under ``$MSA_HOME/uploads`` or ``assets/tasks``;
    None: no battery)."""
    return st.session_state.get(TASKS) or None


def text() -> str | None:
    """The user's own text typed on the Model page (None: none)."""
    return st.session_state.get(TEXT) or None


def set_tasks(path: str | None) -> None:
    """Attach a task-battery file (None: detach); forgets the run (its objective may be the old battery)."""
    if (st.session_state.get(TASKS) or None) != (path or None):
        st.session_state[TASKS] = path or None
        st.session_state[RUN] = None


def set_text(value: str | None) -> None:
    """Keep the user's text (None or blank: none)."""
    st.session_state[TEXT] = value if value and value.strip() else None


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
        st.session_state[TASKS] = None
        st.session_state[TEXT] = None
        forget_page_settings()
    extra = st.session_state.setdefault(EXTRA_MODELS, [])
    if (ref, inputs_file) not in extra:
        extra.append((ref, inputs_file))


def forget_page_settings() -> None:
    """Drop every page setting (another model: its choices start from the defaults)."""
    st.session_state[_URL_MEMORY] = {}
    for param in [p for p in st.query_params if p not in GLOBAL_PARAMS]:
        del st.query_params[param]
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith("url:")]:
        del st.session_state[key]


def set_run(run: str | None) -> None:
    """Select a run (None: none)."""
    st.session_state[RUN] = run


GLOBAL_PARAMS = ("model", "inputs", "run", "tasks", "text")
"""Query parameters of the whole app; every other parameter belongs to the page that binds it."""

_URL_MEMORY = "_msa_url_memory"  # param -> encoded value this session last showed (survives page switches)
_URL_BOUND = "_msa_url_bound"  # params bound during the current script run


def sync_query() -> None:
    """Make the URL hold the model, inputs file and run, plus the parameters bound in this run.

    Called by ``app.py`` after the page ran: parameters left from another page are dropped, so a
    copied link holds the current view and nothing else.
    """
    bound = st.session_state.get(_URL_BOUND, {})
    wanted = {"model": model()}
    if inputs():
        wanted["inputs"] = inputs()
    if run_id():
        wanted["run"] = run_id()
    if tasks():
        wanted["tasks"] = tasks()
    if text():
        wanted["text"] = text()
    wanted.update({param: value for param, value in bound.items() if value is not None})
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def begin_run() -> None:
    """Start of a full script run: no page parameter bound yet."""
    st.session_state[_URL_BOUND] = {}


def encode(value: Any) -> str:
    """A widget value as URL text: lists and tuples comma-separated, everything else ``str``."""
    if isinstance(value, (list, tuple)):
        return ",".join(encode(v) for v in value)
    return str(value)


def url_value(param: str) -> str | None:
    """The encoded value of page parameter ``param``: the URL's (an opened link), else the one this
    session last had (the URL loses page parameters when the user switches pages)."""
    raw = st.query_params.get(param)
    if raw is None:
        raw = st.session_state.get(_URL_MEMORY, {}).get(param)
    return raw


def set_url_value(param: str, encoded: str | None) -> None:
    """Put page parameter ``param`` in the URL now (None: leave it out, e.g. a default value).

    Written at once, not only at the end of the run, so a fragment rerun (the editor's grid) keeps
    the URL current too.
    """
    st.session_state.setdefault(_URL_BOUND, {})[param] = encoded
    memory = st.session_state.setdefault(_URL_MEMORY, {})
    if encoded is None:
        memory.pop(param, None)
        if param in st.query_params:
            del st.query_params[param]
    else:
        memory[param] = encoded
        if st.query_params.get(param) != encoded:
            st.query_params[param] = encoded


def _decode(raw: str, options: Sequence[Any] | None, default: Any, multi: bool) -> Any:
    """URL text back to a widget value; raises ValueError when it is not a valid one."""
    if options is not None:
        by_text = {encode(option): option for option in options}
        if multi:
            parts = [part for part in raw.split(",") if part]
            if any(part not in by_text for part in parts):
                raise ValueError(raw)
            return [by_text[part] for part in parts]
        if raw not in by_text:
            raise ValueError(raw)
        return by_text[raw]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _valid(value: Any, options: Sequence[Any] | None, multi: bool, low: Any, high: Any) -> bool:
    if options is not None:
        return all(v in options for v in value) if multi else value in options
    try:
        return (low is None or value >= low) and (high is None or value <= high)
    except TypeError:
        return False


def url_widget(widget: Callable[..., Any], label: str, param: str, *, default: Any, options: Sequence[Any] | None = None,
               key: str | None = None, **kwargs: Any) -> Any:
    """Draw ``widget`` (``st.selectbox``, ``st.radio``, ``st.slider``, ``st.multiselect``, ...) bound to
    query parameter ``param``: its value starts from the URL (or this session's last value), and the URL
    follows every change. Values equal to ``default`` are left out of the URL.

    Args:
        widget: the Streamlit widget function (or a container's, e.g. ``cols[0].selectbox``).
        label: the widget's label.
        param: the query parameter (unique across pages).
        default: the value without a URL parameter (also used when the URL's value is invalid).
        options: the choices of a selectbox, radio or multiselect (compared by their ``str``).
        key: the session-state key of the widget (default ``"url:<param>"``).
        kwargs: passed to the widget; never ``index`` or ``value`` (the session state holds the value).

    Returns:
        The widget's value.
    """
    key = key or f"url:{param}"
    multi = getattr(widget, "__name__", "") == "multiselect" or isinstance(default, list)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    state = st.session_state
    if key not in state:
        raw = url_value(param)
        value = default
        if raw is not None:
            try:
                value = _decode(raw, options, default, multi)
            except (TypeError, ValueError):
                value = default
        state[key] = value
    if not _valid(state[key], options, multi, low, high):
        state[key] = default
    value = widget(label, options, key=key, **kwargs) if options is not None else widget(label, key=key, **kwargs)
    set_url_value(param, None if encode(value) == encode(default) else encode(value))
    return value


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
