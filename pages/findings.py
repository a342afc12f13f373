"""Findings page: what the analyses say about the selected run and across stored runs, and docs/FINDINGS.md."""

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from msa_core import figures
from ui import resources, state
from ui.errors import shown

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
        flat = record.result.values.reshape(record.result.n_players, -1).shape[1]
        if flat <= 64:
            table = concentration_table(record.result, output_labels=labels if labels and len(labels) == flat else None)
        else:  # per-output rows of an image would be thousands: the whole run only
            table = concentration_table(record.result.values.reshape(record.result.n_players, -1).mean(1, keepdim=True))
        st.caption("Index of distributed computation (normalised entropy of squared mean contributions: 1 = evenly "
                   "spread, 0 = one hub) and hub share (fraction of units carrying 80% of the summed |contribution|).")
        table.index.name = figures.output_axis_title(subject.objective_kind(objective_name), labels) \
            if flat <= 64 else "output"
        st.dataframe(table.head(65), width="stretch")
else:
    st.info("Select a run in the sidebar to see its concentration of computation.")

st.markdown("#### Across stored runs")
with shown("Comparing stored runs"):
    from msa_core.analysis import distributed_index, hub_share, mean_contributions

    rows = []
    for r in resources.store().list():
        try:
            c = mean_contributions(r.result)
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

findings = ROOT / "docs" / "FINDINGS.md"
if findings.exists():
    st.divider()
    text = findings.read_text(encoding="utf-8")
    # render markdown, with images (relative to docs/) shown by st.image
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
else:
    st.caption("docs/FINDINGS.md is not written yet; its figures will appear here.")
