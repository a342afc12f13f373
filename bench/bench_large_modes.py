"""Time to open one unit of a large on-disk run on the Modes page (issue 13): first open (thumbnails and
totals computed, a range of units at a time), second open (read from arrays/<id>), and result.mode(i).

    PYTHONPATH=$PWD python bench/bench_large_modes.py [n_units] [n_images] [side]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main(n_units: int = 1024, n_images: int = 8, side: int = 64) -> None:
    os.environ["MSA_HOME"] = home = tempfile.mkdtemp(prefix="msa-bench-modes-")
    from msa_core.ondisk import ChunkedArray
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    store = RunStore(home, large_dtype="float32")
    shape = (n_units, n_images, 1, side, side)
    scratch = store.scratch_dir() / "bench"
    values = ChunkedArray.create(scratch / "values", shape, np.float32)
    rng = np.random.default_rng(0)
    for start, stop in values.ranges(16 * 2**20):
        values.write_rows(np.arange(start, stop), rng.normal(size=(stop - start, *shape[1:])).astype(np.float32))
    zeros = torch.zeros(shape[1:], dtype=torch.float64)
    result = ShapleyResult(values=values, stderr=None, n_evaluations=1, intact=zeros, empty=zeros, method="permutation")
    run_id = "be" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model="dcgan-digits"), result=result, created=1.0))
    loaded = store.get(run_id).result
    print(f"on-disk run: {shape}, {loaded.values.nbytes / 2**20:.0f} MiB of modes")

    def open_page() -> float:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        for key, value in {"model": "dcgan-digits", "run": run_id, "unit": str(n_units // 2)}.items():
            at.query_params[key] = value
        at._page_hash = calc_hash("modes")
        start = time.perf_counter()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return time.perf_counter() - start

    import streamlit as st

    first = open_page()
    st.cache_data.clear()  # the second open reads the files in arrays/<id>, not Streamlit's cache
    second = open_page()
    start = time.perf_counter()
    loaded.mode(n_units // 3)
    mode_ms = 1e3 * (time.perf_counter() - start)
    print(f"Modes page, one unit: first open {first:.2f} s (thumbnails computed), second open {second:.2f} s "
          f"(cached thumbnails); ratio {first / second:.1f}x; result.mode(i) {mode_ms:.2f} ms")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
