"""Findings page: what the analyses say about the selected run and across stored runs, and docs/FINDINGS.md."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from msa_core import figures
from msa_core.thumbnails import run_mean_contributions
from ui import resources, state
from ui.errors import shown
from ui.text import md_escape

state.page_setup()
st.title("Findings")
ROOT = Path(__file__).resolve().parents[1]

record = resources.record(state.run_id())
if record is not None:
    st.markdown(f"#### The selected run ({record.id[:8]}, {record.spec.model})")
    with shown("Analysing the run"):
        from msa_core.analysis import concentration_table

        subject = resources.subject(record.spec.model, record.spec.inputs)
        objective_name = record.spec.objective or subject.default_objective
        labels = subject.objective_labels(objective_name)
        result = record.result
        flat = int(np.prod(result.output_shape))
        if flat <= 64:  # (n_units, <= 64 outputs) is small even on disk
            values = result.values.numpy() if result.on_disk else result
            table = concentration_table(values, output_labels=labels if labels and len(labels) == flat else None)
        else:  # per-output rows of an image would be thousands: the whole run only (on disk: its cached totals)
            table = concentration_table(run_mean_contributions(result)[:, None])
        st.caption("Index of distributed computation (normalised entropy of squared mean contributions: 1 = evenly "
                   "spread, 0 = one hub) and hub share (fraction of units carrying 80% of the summed |contribution|).")
        table.index.name = figures.output_axis_title(subject.objective_kind(objective_name), labels) \
            if flat <= 64 else "output"
        st.dataframe(table.head(65), width="stretch")
else:
    st.info("Select a run in the sidebar to see its concentration of computation.")

st.markdown("#### Across stored runs")
with shown("Comparing stored runs"):
    from msa_core.analysis import distributed_index, hub_share

    rows = []
    for r in resources.store().list():
        try:
            c = run_mean_contributions(r.result)  # an on-disk run: from its totals, never loaded whole
        except Exception:  # noqa: BLE001 - a run that cannot be analysed is left out
            continue
        rows.append({"run": r.id[:8], "model": r.spec.model, "units": r.result.n_players, "method": r.spec.method,
                     "budget": r.spec.n_permutations, "distributed index": round(distributed_index(c), 3),
                     "hub share": round(hub_share(c), 3)})
    if rows:
        st.dataframe(pd.DataFrame(rows).sort_values(["model", "run"]), hide_index=True, width="stretch")
        st.caption("The paper's finding on the digit MLPs: L1 and L2 regularisation concentrate computation in fewer "
                   "hubs (lower index, smaller hub share) than no regularisation. Run mlp-digits, -l1 and -l2 to compare.")
    else:
        st.caption("No stored runs yet.")

# the report's folder: docs/ of the repository, or where `msa report --out-dir DIR` wrote it
report_dir = Path(os.environ.get("MSA_FINDINGS_DIR") or ROOT / "docs")
findings = report_dir / "FINDINGS.md"


def _show_markdown(text: str) -> None:
    """Markdown with its images (paths relative to the report folder) drawn by st.image."""
    parts = re.split(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    for i in range(0, len(parts), 3):
        if parts[i].strip():
            st.markdown(parts[i])
        if i + 2 < len(parts):
            alt, target = parts[i + 1], parts[i + 2]
            path = (findings.parent / target).resolve()
            if path.exists() and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
                st.image(str(path), caption=alt or None)
            elif path.exists() and path.suffix.lower() == ".html":
                st.components.v1.html(path.read_text(encoding="utf-8"), height=500, scrolling=True)
            else:
                st.caption(f"(figure {target} not found)")


def _show_runs(key: str, refs: list[dict]) -> None:
    """The section's stored runs, each with links that open it in Modes, Lesion curves and Editor."""
    from msa_core.report import distinct_runs, run_links

    refs = distinct_runs(refs)
    with st.expander(f"Open this section's runs ({len(refs)}) in the app", expanded=len(refs) <= 3):
        lines = []
        for ref in refs:
            here = resources.record(ref["run_id"]) is not None
            links = " · ".join(f"[{title}]({url})" for title, url in run_links(ref).items())
            lines.append(f"- **{md_escape(ref['label'])}** `{ref['short_id']}`: {links}"
                         + ("" if here else " (not in this run store: `msa report` recomputes it)"))
        st.markdown("\n".join(lines))
        if key == "sweep":
            st.caption("The sweep's widths below N = 200 are recipes (msa_core.zoo.sweep:...); an app that refuses "
                       "browser recipes opens them only if its operator allows that module.")


if findings.exists():
    from msa_core.report import findings_runs, section_of_heading

    st.divider()
    text = findings.read_text(encoding="utf-8")
    section_runs = findings_runs(report_dir)
    # one block per heading, so each section's run links sit under its heading
    chunks = re.split(r"(?m)^(?=#{2,3} )", text)
    for chunk in chunks:
        heading = chunk.splitlines()[0] if chunk.startswith("#") else ""
        key = section_of_heading(heading) if heading else None
        if key and section_runs.get(key):
            st.markdown(heading)
            _show_runs(key, section_runs[key])
            _show_markdown(chunk[len(heading):])
        else:
            _show_markdown(chunk)
else:
    st.caption(f"{findings} is not written yet (`msa report` writes it); its figures will appear here.")
