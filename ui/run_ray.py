"""The Run page's backend: "local", or "ray" where the server's operator opted in, with the Ray accumulate mode
and units per task; and the line that says how a finished run was computed.

Security: a browser user does not choose where the server computes. Ray is offered only where the server's
environment says so (``$MSA_APP_RAY=1``: a local Ray the server starts or joins; ``$MSA_RAY_ADDRESS``: the
cluster to join), and the cluster address only ever comes from that environment, never from the URL or a
widget. Without the opt-in, a link asking for Ray (``&backend=ray``) computes locally, with a notice: the
values are the same (a Ray run equals a local run with the same seed), so a link shared from a Ray server
still opens and runs on a laptop.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

BACKENDS = ("local", "ray")
ACCUMULATE = {
    "auto": "workers for a sampling run with at least 1,024 outputs per coalition where that returns fewer "
            "bytes, else driver",
    "driver": "workers return every coalition's values; the driver accumulates (bit for bit a local run)",
    "workers": "each worker accumulates a range of samples and returns its mean and m2 (sampling methods; "
               "equal to a local run to float rounding)",
}
"""The Ray accumulate modes (``ray_options["accumulate"]``) and their one-line explanations."""

MAX_UNITS_PER_TASK = 10**9


def server_ray() -> dict[str, Any]:
    """Whether this server offers Ray: ``{"offered": bool, "address": str | None, "note": str | None}``.

    ``address`` is ``$MSA_RAY_ADDRESS`` (None: a local Ray, ``$MSA_APP_RAY=1``); ``note`` is one line where
    the operator opted in but Ray cannot be imported (then not offered).
    """
    address = (os.environ.get("MSA_RAY_ADDRESS") or "").strip() or None
    opted = address is not None or os.environ.get("MSA_APP_RAY", "").strip().lower() in ("1", "true", "yes", "on")
    if opted and importlib.util.find_spec("ray") is None:
        return {"offered": False, "address": None,
                "note": "This server enables Ray, but Ray is not installed here (pip install 'msa-explorer[ray]'): "
                        "runs compute locally."}
    return {"offered": opted, "address": address, "note": None}


def not_offered_notice() -> str:
    """The notice for a link that asks for Ray on a server that does not offer it (the run computes locally)."""
    return ("This link asks for the Ray backend, but this server does not offer it (its operator enables it with "
            "MSA_APP_RAY=1 or MSA_RAY_ADDRESS): the run computes locally, with the same values.")


def units_per_task(text: str | None) -> tuple[int | None, str | None]:
    """The "Units per task" text as ``(units, error)``: empty is automatic ``(None, None)``; a whole number
    from 1 to 10^9 is ``(units, None)``; anything else ``(None, one line)``."""
    if text is None or not text.strip():
        return None, None
    raw = text.strip().replace(",", "").replace("_", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_UNITS_PER_TASK:
        return None, (f"Units per task {text.strip()!r}: write a whole number from 1 to {MAX_UNITS_PER_TASK:,} "
                      "(empty: automatic, four rounds over the workers).")
    return int(raw), None


def submit_options(backend: str, accumulate: str | None = None, units: int | None = None) -> dict[str, Any]:
    """Keyword arguments of :meth:`~msa_core.runs.JobRunner.submit` for the chosen backend: ``{}`` for local
    (or where the server does not offer Ray), else ``{"backend": "ray", "address": the server's address,
    "ray_options": {"accumulate": mode[, "units_per_task": units]}}`` (``ray_options`` None where neither
    is given: a method that does not accumulate samples)."""
    setting = server_ray()
    if backend != "ray" or not setting["offered"]:
        return {}
    options: dict[str, Any] = {"accumulate": accumulate} if accumulate else {}
    if units is not None:
        options["units_per_task"] = int(units)
    return {"backend": "ray", "address": setting["address"], "ray_options": options or None}


def accumulates_samples(method: str, options: dict[str, Any] | None = None) -> bool:
    """Whether a Ray run of ``method`` can accumulate on the workers (a sampling method: permutation,
    antithetic, owen, truncated); the others always spread their evaluations (the accumulate mode and units
    per task do not apply). The rule of :func:`msa_core.runs.ray_accumulate.choose_accumulate`."""
    from msa_core.estimators import SamplingEstimator, make_estimator

    return isinstance(make_estimator(method, **(options or {})), SamplingEstimator)


def hide_address(text: str | None) -> str | None:
    """``text`` (e.g. a failed job's error) with the server's Ray address replaced by ``$MSA_RAY_ADDRESS``:
    the browser user has no need of the cluster's address."""
    address = server_ray()["address"]
    return text.replace(address, "$MSA_RAY_ADDRESS") if text and address else text


def computed_text(record: Any) -> str:
    """How a stored run was computed, as one sentence: "Computed locally." or "Computed on Ray: 2 workers,
    accumulated on the workers (4 units per task; asked for)." (from ``record.params["backend"]`` and
    ``record.result.metadata["ray"]``)."""
    if record is None:
        return ""
    if (record.params or {}).get("backend", "local") != "ray":
        return "Computed locally."
    info = dict(record.result.metadata.get("ray") or {})
    accumulate = dict(info.get("accumulate") or {})
    workers = int(info.get("workers") or 0)
    head = f"Computed on Ray: {workers} worker{'s' if workers != 1 else ''}"
    mode, reason = accumulate.get("mode"), accumulate.get("reason")
    if mode == "workers":
        details = [f"{int(accumulate.get('units_per_task') or 0)} units per task"]
        details += ["moments on disk"] if accumulate.get("on_disk") else []
        head += ", accumulated on the workers"
    elif mode == "driver":
        details = []
        head += ", accumulated on the driver"
    else:
        return head + "."
    details += [reason] if reason else []
    return head + (f" ({'; '.join(details)})" if details else "") + "."


def link_asks_for_ray() -> bool:
    """Whether the URL (or this session) asks for ``backend=ray`` on a server that does not offer it; where it
    does, its Ray parameters stay in the URL as they were, so the link passed on still asks for Ray."""
    from . import state

    if state.url_value("backend") != "ray":
        return False
    for param in ("backend", "ray_accumulate", "ray_units"):
        state.set_url_value(param, state.url_value(param))
    return True
