"""Run keys, the diskcache store, cached and checkpointed execution, kill -9 resume, out-of-memory."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.runs import RunRecord, RunSpec, RunStore, default_root, execute, resolve, run_key
from msa_core.runs.store import RunNotFound

from .games_for_tests import save_torchscript_and_inputs

from .run_fixtures import RECIPE, _one_thread, recipe, store  # noqa: F401  (fixtures)


def test_default_root_reads_msa_home_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "a"))
    assert default_root() == tmp_path / "a"
    assert RunStore().root == tmp_path / "a"
    monkeypatch.delenv("MSA_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_root() == tmp_path / "xdg" / "msa-explorer"


def test_spec_validation_messages():
    with pytest.raises(ValueError, match="unknown method"):
        RunSpec("mlp-digits", method="nope").validate()
    with pytest.raises(ValueError, match="n_permutations"):
        RunSpec("mlp-digits", n_permutations=0).validate()
    with pytest.raises(ValueError, match="lesion"):
        RunSpec("mlp-digits", lesion="burn").validate()
    with pytest.raises(ValueError, match="seed"):
        RunSpec("mlp-digits", seed=-1).validate()
    assert RunSpec("m", units=["a", "b"]).units == ("a", "b")  # lists become tuples (hashable, frozen)
    spec = RunSpec("m", units=("a",), n_permutations=7, label="x")
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_run_key_covers_what_changes_the_result(recipe):
    ref = f"{recipe}:make"
    base = RunSpec(ref, n_permutations=8, seed=0)
    key = run_key(base)
    assert len(key) == 64 and key == run_key(base)
    # batch size, device, label do not change the result: same key
    assert run_key(base.replace(batch_size=3, label="hello")) == key
    # seed, budget, method, lesion, units, objective do
    others = [
        base.replace(seed=1),
        base.replace(n_permutations=9),
        base.replace(method="antithetic"),
        base.replace(lesion="mean"),
        base.replace(units=("0",)),
        base.replace(objective="output", units=("1", "0")),
    ]
    keys = {run_key(s) for s in others}
    assert key not in keys and len(keys) == len(others)
    # exact runs ignore the sampling budget and seed
    exact = base.replace(method="exact")
    assert run_key(exact) == run_key(exact.replace(n_permutations=50, seed=3))
    # the weights are part of the key (through the subject's fingerprint)
    resolved = resolve(base)
    resolved.subject.fingerprint = "0" * 64
    assert resolve(base, resolved.subject).key != key


def test_bad_layer_and_objective_fail_before_any_work(recipe, store):
    ref = f"{recipe}:make"
    with pytest.raises(ValueError, match="not a lesionable layer"):
        execute(RunSpec(ref, units=("nope",)), store)
    with pytest.raises(ValueError, match="objective"):
        execute(RunSpec(ref, objective="accuracy-of-nothing"), store)
    assert store.list() == []


def test_execute_computes_once_then_returns_the_stored_run(recipe, store):
    spec = RunSpec(f"{recipe}:make", n_permutations=12, seed=3, label="first")
    record = execute(spec, store)
    assert not record.params["cached"] and record.label == "first"
    assert record.result.values.shape == (16, 8, 3)
    assert record.result.efficiency_gap() < 1e-9
    # equals shapley_modes on the subject's game, called directly
    resolved = resolve(spec)
    direct = shapley_modes(resolved.game(), 16, n_permutations=12, seed=3)
    assert torch.equal(direct.values, record.result.values)
    assert torch.equal(direct.stderr, record.result.stderr)

    started = time.perf_counter()
    again = execute(spec.replace(batch_size=5, label="other"), store)
    assert again.params["cached"] and again.id == record.id
    assert time.perf_counter() - started < 2.0
    assert torch.equal(again.result.values, record.result.values)
    assert store.find(spec).id == record.id
    assert [r.id for r in store.list()] == [record.id]
    assert store.get(record.id[:6]).id == record.id  # unique prefixes work

    # --no-cache: recompute and replace
    fresh = execute(spec, store, refresh=True)
    assert not fresh.params["cached"] and fresh.created > record.created
    assert torch.equal(fresh.result.values, record.result.values)
    assert len(store.list()) == 1


def test_store_keeps_plain_bytes_and_strings(recipe, store):
    record = execute(RunSpec(f"{recipe}:make", n_permutations=4), store)
    for key in store.cache.iterkeys():
        value = store.cache.get(key)
        assert isinstance(value, (bytes, str)), (key, type(value))
    meta = json.loads(store.cache.get(f"meta/{record.id}"))
    assert meta["spec"]["model"].endswith(":make")
    assert meta["params"]["n_players"] == 16
    # a second store object on the same folder sees the run (the CLI and the app share one store)
    assert RunStore(store.root).get(record.id).result.values.shape == (16, 8, 3)


def test_export_import_delete(recipe, store, tmp_path):
    record = execute(RunSpec(f"{recipe}:make", n_permutations=6, label="exp"), store)
    npz = store.export(record.id, tmp_path / "run.npz")
    with np.load(npz, allow_pickle=False) as arrays:
        for name in ("values", "stderr", "intact", "empty", "unit_labels", "n_evaluations"):
            assert name in arrays.files
        np.testing.assert_array_equal(arrays["values"], record.result.values.numpy())
        assert json.loads(str(arrays["record_json"]))["id"] == record.id
    csv = store.export(record.id, tmp_path / "run.csv")
    import pandas as pd

    frame = pd.read_csv(csv)
    assert len(frame) == 16 * 24 and {"run_id", "unit", "output_index", "value", "stderr"} <= set(frame.columns)
    np.testing.assert_allclose(frame["value"].to_numpy(), record.result.values.reshape(-1).numpy())
    pytest.importorskip("pyarrow")
    parquet = store.export(record.id, tmp_path / "run.parquet")
    assert len(pd.read_parquet(parquet)) == 16 * 24
    with pytest.raises(ValueError, match="npz, .csv or .parquet"):
        store.export(record.id, tmp_path / "run.txt")
    assert not (tmp_path / "run.txt").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]

    assert store.delete(record.id)
    assert store.get(record.id) is None and store.list() == []
    imported = store.import_(npz)
    assert imported.id == record.id and imported.label == "exp"
    assert torch.equal(store.get(record.id).result.values, record.result.values)
    # a plain ShapleyResult file imports too, under the hash of its bytes
    plain = record.result.save(tmp_path / "plain.npz")
    other = store.import_(plain)
    assert other.id != record.id and torch.equal(other.result.values, record.result.values)
    with pytest.raises(ValueError, match="only .npz"):
        store.import_(csv)
    with pytest.raises(RunNotFound):
        store.export("ffffffff", tmp_path / "x.npz")


def test_record_json_roundtrip(recipe, store):
    record = execute(RunSpec(f"{recipe}:make", method="exact"), store)
    assert record.result.stderr is None and record.params["n_evaluations"] == 2**16
    copy = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert copy.id == record.id and copy.spec == record.spec and copy.params == record.params


# ---------------------------------------------------------------------------------------- inputs files
_torchscript_and_inputs = save_torchscript_and_inputs


def test_spec_inputs_validation_and_round_trip():
    spec = RunSpec("model.pt", units=("ops.relu",), inputs="/data/x.npz", method="exact")
    assert spec.validate() is spec
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["inputs"] == "/data/x.npz"
    assert RunSpec.from_dict(data) == spec
    old = {k: v for k, v in data.items() if k != "inputs"}  # a record stored before the field existed
    assert RunSpec.from_dict(old).inputs is None and RunSpec.from_dict(old) == spec.replace(inputs=None)
    assert RunSpec("mlp-digits", n_permutations=3).inputs is None  # positional model still works
    for bad in ("", "   ", 3, ("a.npz",)):
        with pytest.raises(ValueError, match="inputs must be None or a non-empty path"):
            RunSpec("model.pt", inputs=bad).validate()


def test_torchscript_model_with_an_inputs_file_runs_and_is_cached(store, tmp_path):
    model, pt, npz = _torchscript_and_inputs(tmp_path)
    with pytest.raises(ValueError, match="needs example inputs"):
        execute(RunSpec(str(pt), units=("ops.relu",), method="exact"), store)
    spec = RunSpec(str(pt), inputs=str(npz), units=("ops.relu",), method="exact")
    assert resolve(spec).objective == "per-class accuracy"  # the labels in the .npz reached the subject
    record = execute(spec.replace(objective="output"), store)
    result = record.result
    assert not record.params["cached"] and result.n_players == 6 and result.n_evaluations == 2**6
    x = torch.from_numpy(np.load(npz)["x"])
    with torch.no_grad():
        assert torch.allclose(result.intact.float(), model(x), atol=1e-5)  # v(N): the model on these inputs
        assert torch.allclose(result.empty.float(), model[2].bias.expand(10, 3), atol=1e-5)  # ReLU zeroed
    assert not torch.allclose(result.intact, result.empty)
    torch.testing.assert_close(result.values.sum(0), result.intact - result.empty, atol=1e-9, rtol=0)  # efficiency
    assert record.spec.inputs == str(npz) and result.metadata["inputs"] == str(npz)

    again = execute(spec.replace(objective="output", label="again"), store)
    assert again.params["cached"] and again.id == record.id
    assert torch.equal(again.result.values, result.values)
    from msa_core.runs import JobRunner

    runner = JobRunner(store)  # the job runner resolves with the inputs too
    try:
        status = runner.wait(runner.submit(spec.replace(objective="output")), timeout=30)
    finally:
        runner.shutdown()
    assert status.state == "done" and status.cached and status.run_id == record.id

    plain = store.import_(result.save(tmp_path / "plain.npz"))  # a bare result file keeps its inputs
    assert plain.spec.inputs == str(npz)


def test_run_key_follows_the_inputs_content_not_their_path(tmp_path):
    _, pt, npz = _torchscript_and_inputs(tmp_path)
    spec = RunSpec(str(pt), inputs=str(npz), units=("0",), n_permutations=5)
    key = run_key(spec)
    moved = tmp_path / "elsewhere" / "copy.npz"
    moved.parent.mkdir()
    moved.write_bytes(npz.read_bytes())
    assert run_key(spec.replace(inputs=str(moved))) == key  # same content at another path: same run
    _, _, other = _torchscript_and_inputs(tmp_path, seed=1)
    assert run_key(spec.replace(inputs=str(other))) != key  # other inputs: another run
    with np.load(npz) as arrays:
        relabelled = tmp_path / "relabelled.npz"
        np.savez(relabelled, x=arrays["x"], labels=arrays["labels"][::-1].copy())
    assert run_key(spec.replace(inputs=str(relabelled))) != key  # same x, other labels: another objective
    assert run_key(spec.replace(inputs=str(relabelled), objective="output")) == run_key(spec.replace(objective="output"))


def test_ray_worker_rebuilds_the_subject_with_its_inputs_and_checks_the_key(tmp_path):
    """evaluate_rows (what a Ray worker runs; no Ray needed) loads the inputs file and checks the driver's key."""
    from msa_core.runs.ray_backend import evaluate_rows

    _, pt, npz = _torchscript_and_inputs(tmp_path)
    spec = RunSpec(str(pt), inputs=str(npz), units=("ops.relu",), objective="output", n_permutations=4, seed=2)
    resolved = resolve(spec)
    coalitions = torch.rand(7, 6) < 0.5
    values, _ = evaluate_rows(spec.to_dict(), resolved.key, "coalitions", coalitions.numpy())
    assert torch.equal(torch.from_numpy(values), resolved.game()(coalitions))
    _, _, other = _torchscript_and_inputs(tmp_path, seed=1)
    with pytest.raises(ValueError, match="differs from the driver's"):  # another file at the worker's path
        evaluate_rows(spec.replace(inputs=str(other)).to_dict(), resolved.key, "coalitions", coalitions.numpy())


def test_spec_budget_options_preset_tasks_validate_round_trip_and_old_records_load():
    spec = RunSpec("m", method="topk", budget=300, options={"k": 2}, preset="hidden layer", tasks="/t.yaml")
    assert spec.options == (("k", 2),) and hash(spec) == hash(RunSpec.from_dict(spec.to_dict()))
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = {"model": "mlp-digits", "units": ["1"], "method": "permutation", "n_permutations": 5, "seed": 1}
    loaded = RunSpec.from_dict(old)  # a record stored before these fields existed
    assert loaded.budget is None and loaded.options == () and loaded.preset is None and loaded.tasks is None
    for bad, message in [
        (dict(budget=0), "budget"),
        (dict(options={"k": [1]}), "option 'k'"),
        (dict(method="permutation", options={"k": 3}), "does not take the options"),
        (dict(units=("1",), preset="hidden layer"), "not both"),
        (dict(preset=""), "preset"),
        (dict(tasks=""), "tasks"),
    ]:
        with pytest.raises(ValueError, match=message):
            RunSpec("mlp-digits", **bad).validate()


def test_run_key_follows_budget_options_and_the_tasks_content_not_its_path(recipe, tmp_path):
    ref = f"{recipe}:make"
    base = RunSpec(ref, method="topk", n_permutations=8)
    subject = resolve(base).subject  # given to resolve: the key logic without a battery-aware loader
    keys = {resolve(s, subject).key for s in (base, base.replace(budget=200), base.replace(options={"k": 2}))}
    assert len(keys) == 3
    first, moved, other = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    first.write_text("tasks: []\n")
    moved.write_text("tasks: []\n")
    other.write_text("tasks: [x]\n")
    with_tasks = {p: resolve(base.replace(tasks=str(p)), subject).key for p in (first, moved, other)}
    assert with_tasks[first] == with_tasks[moved] != with_tasks[other] and with_tasks[first] not in keys
    with pytest.raises(ValueError, match="does not exist"):
        resolve(base.replace(tasks=str(tmp_path / "none.yaml")), subject)


def test_editing_a_recipe_file_or_module_never_returns_a_stale_run(recipe, store, tmp_path, monkeypatch):
    import importlib

    from msa_core.runs import recipe_source_hash

    spec = RunSpec(f"{recipe}:make", n_permutations=3)
    first = execute(spec, store)
    recipe.write_text(recipe.read_text() + "\n# an edit that changes no weight\n")
    second = execute(spec, store)
    assert not second.params["cached"] and second.id != first.id
    assert execute(spec, store).params["cached"]  # unchanged since: found

    package = tmp_path / "pkgroot"
    package.mkdir()
    module = package / "msa_edit_me_recipe.py"
    module.write_text(RECIPE)
    monkeypatch.syspath_prepend(str(package))
    ref = "msa_edit_me_recipe:make"
    before = recipe_source_hash(ref)
    assert before is not None and "msa_edit_me_recipe" not in sys.modules  # hashed without importing it
    key = run_key(RunSpec(ref, n_permutations=3))
    module.write_text(RECIPE + "\n# edited\n")
    importlib.invalidate_caches()
    assert recipe_source_hash(ref) != before
    sys.modules.pop("msa_edit_me_recipe", None)
    assert run_key(RunSpec(ref, n_permutations=3)) != key


def test_estimate_cost_times_this_game_and_brackets_the_real_run(recipe, store, monkeypatch):
    """A game that sleeps 20 ms per call: the estimate comes from timing its batches, and the real run's
    time lies in the range (within a factor 2 either side, for a busy machine); nothing is stored."""
    from msa_core.runs import estimate_cost, plan

    monkeypatch.setenv("MSA_TEST_DELAY", "0.02")
    spec = RunSpec(f"{recipe}:make", n_permutations=40, seed=1, batch_size=8)  # 2 + 40 * 15 = 602: 76 calls
    cost = estimate_cost(spec, probe_seconds=0.4)
    assert cost["evaluations"] == plan(spec)["evaluations"] == 602 and not cost["complete"]
    assert 0 < cost["seconds_low"] <= cost["seconds_high"]
    assert 8 / 0.02 / 3 < cost["evaluations_per_second"] < 8 / 0.02 * 1.5  # sleep-bound: about 400 per s
    assert store.list() == [] and store.checkpoints() == []
    began = time.perf_counter()
    execute(spec, store)
    took = time.perf_counter() - began
    assert cost["seconds_low"] / 2 <= took <= cost["seconds_high"] * 2, (cost, took)
    small = estimate_cost(spec.replace(n_permutations=2), probe_seconds=5.0)  # the probe finishes the run
    assert small["complete"] and small["seconds_low"] == small["seconds_high"] and small["measured_evaluations"] == 32
