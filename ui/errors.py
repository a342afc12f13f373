"""Show failures as clear messages (``st.error``), never as Python tracebacks, and never let user code stop
the server.

A model file or a recipe can raise anything: ``SystemExit`` (``exit()``), ``KeyboardInterrupt`` raised by its
code (a real Ctrl-C reaches the server's main thread, never a script thread), ``RecursionError``,
``MemoryError``. :func:`shown` turns every one into one message. Streamlit's own control flow (``st.rerun``,
``st.stop``: ``ScriptControlException``, a ``BaseException``) passes through untouched.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from .text import md_escape

try:  # where Streamlit 1.4x-1.6x keeps st.rerun / st.stop's exceptions
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException
except ImportError:  # pragma: no cover - older layout
    from streamlit.runtime.scriptrunner.exceptions import ScriptControlException  # type: ignore[no-redef]

log = logging.getLogger("msa_explorer")

# Raised by Streamlit (reruns, stops) or by Python itself when a generator is closed: never swallowed.
PASS_THROUGH = (ScriptControlException, GeneratorExit)


def message(error: BaseException) -> str:
    """One readable line for an exception (the library's errors already say what to do)."""
    if isinstance(error, SystemExit):
        return f"the model's code called exit({error.code!r}) (SystemExit); the server keeps running"
    if isinstance(error, KeyboardInterrupt):
        return "the model's code raised KeyboardInterrupt; the server keeps running"
    if isinstance(error, RecursionError):
        return f"RecursionError: {error} (the model or its code recurses without end)"
    if isinstance(error, MemoryError):
        return "MemoryError: the model or its inputs need more memory than this server has"
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    return text


@contextmanager
def shown(what: str) -> Iterator[None]:
    """Run a block; on any exception show ``"<what> failed: <message>"`` and keep the page usable.

    The message is Markdown-escaped (file names, recipe references and class names such as
    ``__main__.EvilNet`` show as typed).
    """
    try:
        yield
    except PASS_THROUGH:
        raise
    except BaseException as error:  # noqa: BLE001 - the user gets a message, the log gets the traceback
        log.error("%s failed", what, exc_info=error)
        st.error(md_escape(f"{what} failed: {message(error)}"))
