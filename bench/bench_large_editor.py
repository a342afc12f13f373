"""The Editor on the paper's generator (issue 13): 1,987 channels, seeded random weights saved as a user's
weights file and opened through the recipe ``msa_core.zoo.paper_gan:paper_gan``, with an on-disk run of
float32 modes ``(1987, n_latents, 3, 128, 128)`` (random values: the page's work does not depend on them).
Prints the first open (totals computed a range of units at a time), a reopen (totals cached), the time of a
preset click (lesioned forward pass + the lesioned units' modes read), the lesioned forward pass alone, the
Shapley prediction alone, the rows read per click, and peak RSS.

    PYTHONPATH=$PWD MSA_TORCH_THREADS=1 python bench/bench_large_editor.py [n_latents] [k]
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
REF = "msa_core.zoo.paper_gan:paper_gan"
UNITS = tuple(f"net.{i}" for i in range(6))


def main(n_latents: int = 2, k: int = 10) -> None:
    os.environ["MSA_HOME"] = home = tempfile.mkdtemp(prefix="msa-bench-editor-")
    from safetensors.torch import save_file
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    from msa_core import editor as ed
    from msa_core.editor_units import ShapleyPrediction
    from msa_core.ondisk import ChunkedArray
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord
    from msa_core.zoo.paper_gan import paper_dcgan_generator, paper_gan

    torch.set_num_threads(int(os.environ.get("MSA_TORCH_THREADS", "1")))
    weights = Path(home) / "generator.safetensors"
    generator = paper_dcgan_generator(seed=0)
    save_file({name: t.contiguous() for name, t in generator.state_dict().items()}, str(weights))
    os.environ["MSA_PAPER_GAN_WEIGHTS"], os.environ["MSA_PAPER_GAN_LATENTS"] = str(weights), str(n_latents)
    subject = paper_gan()
    with torch.no_grad():
        intact = subject["model"](subject["inputs"]).double()

    store = RunStore(home, large_dtype="float32")
    shape = (1987, n_latents, 3, 128, 128)
    values = ChunkedArray.create(store.scratch_dir() / "bench" / "values", shape, np.float32)
    rng = np.random.default_rng(0)
    for start, stop in values.ranges(16 * 2**20):
        values.write_rows(np.arange(start, stop), rng.normal(size=(stop - start, *shape[1:])).astype(np.float32))
    result = ShapleyResult(values=values, stderr=None, n_evaluations=1, intact=intact, empty=torch.zeros_like(intact),
                           method="permutation")
    run_id = "ed" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model=REF, units=UNITS), result=result, created=1.0))
    loaded = store.get(run_id).result
    print(f"on-disk run: {shape}, {loaded.values.nbytes / 2**20:.0f} MiB of float32 modes")

    rows_read: list[int] = []
    original = ChunkedArray.read_rows

    def counting(self, rows):
        out = original(self, rows)
        rows_read.append(len(out))
        return out

    ChunkedArray.read_rows = counting

    def timed(action) -> float:
        start = time.perf_counter()
        at = action()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        return time.perf_counter() - start

    from streamlit.runtime.pages_manager import PagesManager

    init = PagesManager.__init__

    def navigation_only(self, *args, **kwargs):  # as tests/app/conftest.py: every run goes through app.py
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = navigation_only

    def new_page():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.query_params["model"], at.query_params["run"] = REF, run_id
        at._page_hash = calc_hash("editor")
        return at

    at = new_page()
    first = timed(at.run)
    at.number_input[0].set_value(k)
    timed(at.run)
    rows_read.clear()
    click_top = timed(next(b for b in at.button if b.label == f"Lesion top-{k}").click().run)
    top_rows = sum(rows_read)
    click_bottom = timed(next(b for b in at.button if b.label == f"Lesion bottom-{k}").click().run)
    shown = at.session_state["editor_view"]
    second = timed(new_page().run)  # a new session: the totals come from arrays/<id>/totals.npy
    assert len(shown["lesioned"]) == k, (shown["lesioned"], [m.value for m in at.info], [w.label for w in at.button])

    game = load_game(subject)
    lesioned = list(shown["lesioned"])
    start = time.perf_counter()
    with torch.no_grad():
        game(ed.coalition(game.n_players, lesioned))
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    ShapleyPrediction(loaded).effect(lesioned)
    predict_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"Editor, {shape[0]} units, {n_latents} latents: first open {first:.2f} s (totals computed), reopen "
          f"{second:.2f} s; lesion top-{k} click {1e3 * click_top:.0f} ms ({top_rows} modes read), bottom-{k} click "
          f"{1e3 * click_bottom:.0f} ms; lesioned forward pass {1e3 * forward_s:.0f} ms, Shapley prediction of {k} "
          f"units {1e3 * predict_s:.0f} ms; peak RSS {peak:.0f} MiB (modes on disk {loaded.values.nbytes / 2**20:.0f} MiB, "
          f"ratio {loaded.values.nbytes / 2**20 / peak:.1f}x)")
    shutil.rmtree(home, ignore_errors=True)


def load_game(recipe: dict):
    """The raw-output game of the recipe's model over all 1,987 channels (as the editor builds it)."""
    from msa_core import lesion_game

    return lesion_game(recipe["model"], list(UNITS), recipe["inputs"])


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
