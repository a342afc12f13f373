"""Interrupted runs: cancel, kill -9, out-of-memory halving and a failing model, each leaving the store
consistent and resuming to the uninterrupted values."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from msa_core.runs import RunSpec, RunStore, execute, run_key

from .run_fixtures import _one_thread, recipe, store  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def test_cancel_keeps_a_checkpoint_and_resume_equals_an_uninterrupted_run(recipe, store, tmp_path):
    spec = RunSpec(f"{recipe}:make", n_permutations=600, seed=5, batch_size=64)  # 3 blocks of 256 units
    reference = execute(spec, RunStore(tmp_path / "reference"))
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > 256 * 15 + 2:  # inside the second block: the first is merged
            cancel.set()

    from msa_core import RunCancelled

    with pytest.raises(RunCancelled):
        execute(spec, store, progress=progress, cancel=cancel, checkpoint_interval=0.0)
    key = run_key(spec)
    state, info = store.load_checkpoint(key)
    assert state["next_unit"] == 256 and info["key"] == key
    assert store.get(key) is None  # nothing half-finished is listed as a run

    resumed = execute(spec, store)
    assert resumed.params["resumed_from_unit"] == 256
    assert resumed.params["evaluations_this_session"] < reference.result.n_evaluations
    assert torch.equal(resumed.result.values, reference.result.values)
    assert torch.equal(resumed.result.stderr, reference.result.stderr)
    assert resumed.result.n_evaluations == reference.result.n_evaluations
    assert not store.has_checkpoint(key)  # the finished run replaces its checkpoint


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from msa_core.runs import RunSpec, RunStore, execute, run_key
    spec = RunSpec(sys.argv[1], n_permutations=1280, seed=11, batch_size=128)
    record = execute(spec, RunStore(sys.argv[2]))
    print("finished", record.id, flush=True)
    """
)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result(recipe, store, tmp_path):
    """A real subprocess is killed with SIGKILL after its first checkpoint; the run resumes from it."""
    ref = f"{recipe}:make"
    spec = RunSpec(ref, n_permutations=1280, seed=11, batch_size=128)  # 5 blocks of 256 permutations
    key = run_key(spec)
    script = tmp_path / "run_it.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "MSA_TEST_DELAY": "0.02", "MSA_CHECKPOINT_INTERVAL": "0", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), ref, str(store.root)], env=env, cwd=str(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not store.has_checkpoint(key):
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert store.get(key) is None
    state, _ = store.load_checkpoint(key)
    assert 0 < state["next_unit"] < 1280

    resumed = execute(spec, store)  # the same run again: continues from the checkpoint
    reference = execute(spec, RunStore(tmp_path / "uninterrupted"))
    assert resumed.params["resumed_from_unit"] == state["next_unit"]
    assert torch.equal(resumed.result.values, reference.result.values)
    assert torch.equal(resumed.result.stderr, reference.result.stderr)
    saved = reference.result.n_evaluations - resumed.params["evaluations_this_session"]
    assert saved == state["n_evaluations"] > 0
    print(f"kill -9 resume: {saved} of {reference.result.n_evaluations} evaluations reused from the checkpoint")


def test_out_of_memory_halves_the_batch_and_changes_nothing(recipe, store, tmp_path):
    """The model raises CUDA OOM above 16 coalitions per call: the runner halves 64 -> 32 -> 16 and goes on."""
    ref = f"{recipe}:make_oom"
    small = execute(RunSpec(ref, n_permutations=20, seed=2, batch_size=16), RunStore(tmp_path / "small"))
    big = execute(RunSpec(ref, n_permutations=20, seed=2, batch_size=64), store)
    modules = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(recipe)]
    assert modules and max(m.Limit.raised for m in modules) >= 2  # 64 -> 32 -> 16 coalitions per call
    assert torch.equal(small.result.values, big.result.values)
    assert torch.equal(small.result.stderr, big.result.stderr)
    assert big.result.n_evaluations == small.result.n_evaluations == 2 + 20 * 15


def test_a_failing_model_leaves_no_run(recipe, store):
    with pytest.raises(Exception, match="boom"):
        execute(RunSpec(f"{recipe}:make_boom", n_permutations=4), store)
    assert store.list() == []
