"""Show failures as clear messages (``st.error``), never as Python tracebacks."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

log = logging.getLogger("msa_explorer")


def message(error: BaseException) -> str:
    """One readable line for an exception (the library's errors already say what to do)."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    return text


@contextmanager
def shown(what: str) -> Iterator[None]:
    """Run a block; on an exception show ``"<what> failed: <message>"`` and keep the page usable.

    Streamlit's own control flow (``st.stop``, ``st.rerun``) derives from BaseException and passes.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - the user gets a message, the log gets the traceback
        log.exception("%s failed", what)
        st.error(f"{what} failed: {message(error)}")
