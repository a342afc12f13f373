"""The seams: every method in METHODS through every path, and every preset of every built-in.

Paths: the library (``shapley_modes`` on the subject's game), ``execute``, the ``JobRunner``, the CLI
(``msa run``) and Ray (``execute(backend="ray")``). The memory bound (``max_memory``, ``--max-memory``)
is an option of every path: a bound small enough to stream the sampling methods' accumulators to disk
gives the unbounded library's values on each. On a tiny recipe model every method must run on every
path and give the library's values; efficiency must hold where the method claims it. A method added to
``METHODS`` is picked up here automatically; one that a path cannot run fails this file. Ray runs on one
local Ray started once for the module (run it under ``flock /tmp/ray.lock``).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

from msa_core import shapley_modes
from msa_core.cli import main
from msa_core.estimators import BOUNDED_ESTIMATORS, METHODS, make_estimator
from msa_core.runs import JobRunner, RunSpec, RunStore, execute, list_builtins, load_subject, resolve

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 120  # evaluations: enough for every method on 5 players (kadd needs 15 features)
SEED = 5
PATHS = ("execute", "jobs", "cli", "ray")

RECIPE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(-1))
        return {"model": model, "inputs": torch.randn(6, 4), "default_units": ["1"]}
    '''
)


# float64 so that the streamed walk (plain coalition calls) and the block loop (prefix reuse) see the same
# game values; 6 x 500 outputs, so that 1 MB streams the sampling methods' accumulators to disk
WIDE_RECIPE = RECIPE.replace("nn.Linear(5, 3), nn.Softmax(-1))", "nn.Linear(5, 500), nn.Softmax(-1)).double()").replace(
    "torch.randn(6, 4)", "torch.randn(6, 4, dtype=torch.float64)")
BOUNDS = {"owen": "2MB"}  # owen's strata need 1.5 MB a player at these outputs; every other method: 1 MB
STREAMING = ("permutation", "antithetic", "owen", "truncated", "topk")  # msa_core.bounded.STREAMING_METHODS


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> str:
    """One recipe file for the whole module, so Ray workers load it once."""
    path = tmp_path_factory.mktemp("seams") / "seam_recipe.py"
    path.write_text(RECIPE)
    return f"{path}:make"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray  # left running for the other Ray test module (one Ray per pytest process; closed at exit)


@pytest.fixture(scope="module")
def wide_recipe(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("seams_wide") / "seam_wide_recipe.py"
    path.write_text(WIDE_RECIPE)
    return f"{path}:make"


_LIBRARY: dict[tuple[str, str], object] = {}


def _spec(recipe: str, method: str) -> RunSpec:
    return RunSpec(recipe, method=method, budget=BUDGET, seed=SEED)


def _library(recipe: str, method: str):
    """The reference: ``shapley_modes`` on the subject's game, no run machinery, no bound."""
    if (recipe, method) not in _LIBRARY:
        game = resolve(_spec(recipe, method)).game()
        _LIBRARY[recipe, method] = shapley_modes(game, game.n_players, method=method, budget=BUDGET, seed=SEED)
    return _LIBRARY[recipe, method]


def _claims_efficiency(method: str) -> bool:
    return bool(getattr(make_estimator(method), "efficient", True))


def _through(path: str, recipe: str, method: str, tmp_path: Path, request, capsys, max_memory: str | None = None
             ) -> object:
    """The result of ``method`` on ``recipe`` through ``path``, under ``max_memory`` (None: no bound)."""
    spec = _spec(recipe, method)
    bound = {"max_memory": max_memory} if max_memory is not None else {}
    if path == "library":
        game = resolve(spec).game()
        return shapley_modes(game, game.n_players, method=method, budget=BUDGET, seed=SEED,
                             scratch_dir=tmp_path / "scratch", **bound)
    if path == "execute":
        seen: list[tuple[int, int]] = []
        record = execute(spec, RunStore(tmp_path / "store"), progress=lambda d, t: seen.append((d, t)), **bound)
        assert seen and seen[0] == (0, seen[0][1]) and all(total > 0 for _, total in seen)  # never 0 / 0
        assert seen[-1][0] == record.result.n_evaluations
        return record.result
    if path in ("jobs", "jobs-ray"):
        runner = JobRunner(RunStore(tmp_path / "store"))
        if path == "jobs-ray":  # the runner hands the backend and its options to execute
            request.getfixturevalue("local_ray")
            bound.update(backend="ray", ray_options={"accumulate": "driver"})
        try:
            job = runner.submit(spec, **bound)
            assert runner.status(job).total > 0  # the planned total is known at once
            status = runner.wait(job, timeout=120)
            assert status.state == "done", status.error
            result = runner.store.get(status.run_id).result
            assert status.on_disk == result.on_disk  # the status says where the result went
            if path == "jobs-ray":
                assert status.backend == "ray" and result.metadata["ray"]["accumulate"]["mode"] == "driver"
            return result
        finally:
            runner.shutdown()
    if path == "cli":
        flags = ["--max-memory", max_memory] if max_memory is not None else []
        code = main(["run", recipe, "--method", method, "--budget", str(BUDGET), "--seed", str(SEED), *flags])
        out, err = capsys.readouterr()
        if code == 2 and err.startswith("msa: error: "):
            raise ValueError(err.strip())  # the CLI's one-line refusal, compared like the others
        assert code == 0, err
        assert f"msa runs show {out.strip()[:12]}" in err and "efficiency" in err
        return RunStore(tmp_path / "home").get(out.strip()).result
    request.getfixturevalue("local_ray")
    record = execute(spec, RunStore(tmp_path / "store"), backend="ray", **bound)
    assert record.params["backend"] == "ray" and record.result.metadata["ray"]["tasks"] >= 1
    return record.result


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_through_every_path_agrees_with_the_library(method, path, recipe, tmp_path, request, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    reference = _library(recipe, method)
    if _claims_efficiency(method):
        assert reference.efficiency_gap() < 1e-9
    result = _through(path, recipe, method, tmp_path, request, capsys)
    assert result.method == reference.method and result.n_evaluations == reference.n_evaluations
    assert torch.allclose(result.values, reference.values, rtol=0, atol=1e-12), (method, path)
    if reference.stderr is not None:
        assert torch.allclose(result.stderr, reference.stderr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ("library", *PATHS, "jobs-ray"))
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_under_a_memory_bound_through_every_path_gives_the_unbounded_values(
        method, path, wide_recipe, tmp_path, request, monkeypatch, capsys):
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    bound = BOUNDS.get(method, "1MB")
    assert isinstance(make_estimator(method), BOUNDED_ESTIMATORS), method  # every method takes a bound
    reference = _library(wide_recipe, method)
    result = _through(path, wide_recipe, method, tmp_path, request, capsys, max_memory=bound)
    assert result.n_evaluations == reference.n_evaluations
    # the sampling methods stream with their accumulators on disk; exact and the regressions fit or spill the
    # game values and solve in memory (the Ray workers mode keeps a worker's moments in its own memory)
    assert result.on_disk == (method in STREAMING or (method == "auto" and reference.metadata["auto"]["chosen"]
                                                      in STREAMING)), (method, path, result.metadata.get("memory"))
    values = result.values.to_tensor() if result.on_disk else result.values
    assert torch.allclose(values, reference.values, rtol=0, atol=1e-12), (method, path)
    if reference.stderr is not None:
        stderr = result.stderr.to_tensor() if result.on_disk else result.stderr
        assert torch.allclose(stderr, reference.stderr, rtol=0, atol=1e-12)


def _presets() -> list[tuple[str, str]]:
    return [(name, preset) for name, _ in list_builtins() for preset in load_subject(name).unit_presets]


@pytest.mark.parametrize("model, preset", _presets())
def test_every_preset_of_every_builtin_runs_through_execute(model, preset, tmp_path):
    subject = load_subject(model)
    spec = RunSpec(model, preset=preset, n_permutations=1, seed=0)
    record = execute(spec, RunStore(tmp_path / "store"), resolved=resolve(spec, subject))
    as_unit = resolve(RunSpec(model, units=(preset,), n_permutations=1), subject)  # a preset wherever a unit goes
    assert record.params["units"] == as_unit.document["units"] and record.id == as_unit.key
    assert record.result.n_players == subject.game(units=preset).n_players  # the Python API takes it too
    assert record.result.efficiency_gap() < 1e-6


def test_an_unknown_preset_names_the_presets(tmp_path):
    with pytest.raises(ValueError, match="'hidden layer'"):
        execute(RunSpec("mlp-digits", preset="hidden layers"), RunStore(tmp_path / "store"))
    with pytest.raises(ValueError, match="presets: 'hidden layer'"):
        resolve(RunSpec("mlp-digits", units=("hidden layers",)))


MULTI_BLOCK_METHODS = ("permutation", "antithetic", "owen", "truncated", "topk")


class _CancelAfterCheckpoint(RunStore):
    """A store that asks the run to stop once it has saved its first checkpoint."""

    def __init__(self, root, cancel) -> None:
        super().__init__(root)
        self.cancel = cancel

    def save_checkpoint(self, *args, **kwargs):
        super().save_checkpoint(*args, **kwargs)
        self.cancel.set()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_resumes_from_a_checkpoint_with_the_uninterrupted_values(method, recipe, tmp_path):
    import threading

    from msa_core import RunCancelled

    spec = RunSpec(recipe, method=method, budget=20000, seed=1, batch_size=64, options=_few_top_units(method))
    reference = execute(spec, RunStore(tmp_path / "reference")).result
    cancel = threading.Event()
    store = _CancelAfterCheckpoint(tmp_path / "store", cancel)
    try:
        execute(spec, store, cancel=cancel, checkpoint_interval=0.0)
        resumed = False  # one block only: nothing to resume (the run ended at its first checkpoint)
    except RunCancelled:
        resumed = True
        assert spec_key_in(store, spec)
    record = execute(spec, RunStore(tmp_path / "store"))
    assert resumed == (record.params["resumed_evaluations"] > 0)
    # the join-order methods spend this budget in many blocks, so they must have resumed; an estimator that
    # spends it in one block (exact; regression methods enumerating all 2^5 coalitions) finished at its
    # first checkpoint and the second call found the stored run
    assert resumed or (method not in MULTI_BLOCK_METHODS and record.params["cached"]), method
    assert torch.equal(record.result.values, reference.values)


def _few_top_units(method: str) -> dict:
    """``{"k": 2}`` for a method that takes k (an adaptive top-k search then needs several rounds)."""
    try:
        make_estimator(method, k=2)
    except TypeError:
        return {}
    return {"k": 2}


def spec_key_in(store: RunStore, spec: RunSpec) -> bool:
    return resolve(spec).key in store.checkpoints()
