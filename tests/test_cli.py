"""The ``msa`` command line: models, layers, run (cached, --out, --no-cache), runs list/show/export/import/delete."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from msa_core.cli import SUBCOMMANDS, main
from msa_core.runs import RunStore

from .games_for_tests import save_torchscript_and_inputs

ROOT = Path(__file__).resolve().parents[1]

RECIPE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
        return {"model": model, "inputs": torch.randn(8, 6), "default_units": ["1"], "unit_presets": {"first": ["0"]}}
    '''
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(threads)


@pytest.fixture()
def model(tmp_path: Path) -> str:
    path = tmp_path / "cli_recipe.py"
    path.write_text(RECIPE)
    return f"{path}:make"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_lists_the_builtins(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert "mlp-digits" in names and "dcgan-digits" in names
    assert all(len(line.split(maxsplit=1)) == 2 for line in out.strip().splitlines())  # name + description


def test_layers(capsys, model):
    code, out, _ = run(capsys, "layers", model)
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["path", "units", "count", "output"]
    row = next(line for line in out.splitlines() if line.startswith("1 *"))  # the default layer is starred
    assert "12" in row.split() and "8x12" in row


def test_run_prints_the_id_writes_out_and_is_cached(capsys, model, tmp_path, home):
    out_file = tmp_path / "modes.npz"
    code, out, err = run(capsys, "run", model, "--permutations", "10", "--seed", "3", "--out", str(out_file))
    assert code == 0, err
    run_id = out.strip()
    assert len(run_id) == 64
    with np.load(out_file, allow_pickle=False) as arrays:
        for name in ("values", "stderr", "intact", "empty", "unit_labels", "n_evaluations"):
            assert name in arrays.files
        assert arrays["values"].shape == (12, 8, 3) and int(arrays["n_evaluations"]) == 2 + 10 * 11
    record = RunStore(home).get(run_id)
    assert record is not None and np.array_equal(record.result.values.numpy(), np.load(out_file)["values"])

    code, out, err = run(capsys, "run", model, "--permutations", "10", "--seed", "3", "--batch-size", "7")
    assert code == 0 and out.strip() == run_id and "found in the store" in err
    code, out, err = run(capsys, "run", model, "--permutations", "10", "--seed", "3", "--no-cache")
    assert code == 0 and out.strip() == run_id and "computed" in err
    code, out, _ = run(capsys, "run", model, "--permutations", "10", "--seed", "4", "--method", "antithetic",
                       "--layer", "0", "--lesion", "mean", "--label", "second")
    assert code == 0 and out.strip() != run_id
    assert len(RunStore(home).list()) == 2


def test_runs_list_show_export_import_delete(capsys, model, tmp_path, home):
    _, out, _ = run(capsys, "run", model, "--method", "exact", "--label", "exact one")
    run_id = out.strip()
    code, out, _ = run(capsys, "runs", "list")
    assert code == 0 and run_id[:12] in out and "exact one" in out
    code, out, _ = run(capsys, "runs", "show", run_id[:8])
    assert code == 0 and run_id in out and "12 players" in out and "top units" in out
    code, out, _ = run(capsys, "runs", "show", run_id[:8], "--json")
    assert code == 0 and '"method": "exact"' in out
    for name in ("run.npz", "run.csv", "run.parquet"):
        code, _, err = run(capsys, "runs", "export", run_id[:10], str(tmp_path / name))
        assert code == 0, err
        assert (tmp_path / name).stat().st_size > 0
    code, _, _ = run(capsys, "runs", "delete", run_id)
    assert code == 0 and RunStore(home).get(run_id) is None
    code, out, _ = run(capsys, "runs", "list")
    assert "no runs" in out
    code, out, _ = run(capsys, "runs", "import", str(tmp_path / "run.npz"))
    assert code == 0 and out.strip() == run_id and RunStore(home).get(run_id).label == "exact one"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-model"], "no-such-model"),
        (["run", "{model}", "--layer", "9"], "not a lesionable layer"),
        (["run", "{model}", "--objective", "nope"], "nope"),
        (["run", "{model}", "--permutations", "0"], "--permutations"),
        (["run", "{model}", "--permutations", "many"], "invalid int"),
        (["run", "{model}", "--method", "guess"], "invalid choice"),
        (["run", "{model}", "--lesion", "burn"], "invalid choice"),
        (["run", "{model}", "--out", "{tmp}/missing/x.npz"], "does not exist"),
        (["run", "{model}", "--out", "{tmp}/x.txt"], ".npz"),
        (["run", "{model}", "--device", "cuda:7"], "cuda"),
        (["run", "{model}", "--address", "1.2.3.4:6379"], "--backend ray"),
        (["run", "{model}", "--ray-accumulate", "workers"], "--backend ray"),
        (["run", "{model}", "--ray-accumulate", "nodes", "--backend", "ray"], "invalid choice"),
        (["run", "{model}", "--ray-units-per-task", "0", "--backend", "ray"], "--ray-units-per-task"),
        (["run", "{model}", "--budget", "0"], "--budget"),
        (["run", "{model}", "--budget", "1"], "budget"),
        (["run", "{model}", "--k", "0", "--method", "topk"], "--k"),
        (["run", "{model}", "--k", "2"], "does not take the options"),
        (["run", "{model}", "--permutations", "5", "--budget", "90"], "not both"),
        (["run", "{model}", "--preset", "first", "--layer", "0"], "not both"),
        (["run", "{model}", "--preset", "nope"], "presets: 'first'"),
        (["run", "{model}", "--tasks", "{tmp}/none.yaml"], "--tasks: no file at"),
        (["runs", "show", "abcdef"], "no run"),
        (["runs", "export", "abcdef", "{tmp}/x.npz"], "no run"),
        (["runs", "delete", "ab"], "at least 4"),
        (["runs", "import", "{tmp}/none.npz"], "no file"),
        (["runs"], "required"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(capsys, model, tmp_path, argv, message):
    argv = [a.format(model=model, tmp=tmp_path) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("msa: error: ") and message in err, err
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.txt"))  # nothing half-written
    assert out == ""


def test_subcommands_can_be_registered():
    assert {"models", "layers", "run", "runs", "report"} <= set(SUBCOMMANDS)


def test_module_entry_point_in_a_subprocess_imports_neither_streamlit_nor_ray(tmp_path):
    code = textwrap.dedent(
        """
        import runpy, sys
        sys.argv = ["msa", "models"]
        try:
            runpy.run_module("msa_core.cli", run_name="__main__")
        except SystemExit as exit_:
            assert not exit_.code, exit_.code
        assert "streamlit" not in sys.modules and "ray" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "MSA_HOME": str(tmp_path / "h"), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "mlp-digits" in done.stdout


@pytest.fixture()
def torchscript(tmp_path: Path) -> tuple[str, str]:
    """A tiny Linear-ReLU-Linear TorchScript file and an inputs .npz (x float32, labels int64)."""
    _, pt, npz = save_torchscript_and_inputs(tmp_path, inputs_name="data/inputs.npz")
    return str(pt), str(npz)


def test_torchscript_model_with_inputs(capsys, torchscript, tmp_path, home, monkeypatch):
    pt, npz = torchscript
    code, out, err = run(capsys, "layers", pt, "--inputs", npz)
    assert code == 0, err
    paths = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert paths == ["0", "ops.relu", "2"]
    assert "10x6" in next(line for line in out.splitlines() if line.startswith("ops.relu"))

    monkeypatch.chdir(tmp_path / "data")  # a relative --inputs is stored as an absolute path
    code, out, err = run(capsys, "run", pt, "--inputs", "inputs.npz", "--method", "exact", "--layer", "ops.relu")
    assert code == 0, err
    run_id = out.strip()
    assert len(run_id) == 64
    record = RunStore(home).get(run_id)
    assert record.spec.inputs == npz and Path(record.spec.inputs).is_absolute()
    assert record.params["objective"] == "per-class accuracy" and record.result.n_players == 6
    assert record.result.efficiency_gap() < 1e-9
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "run", pt, "--inputs", npz, "--method", "exact", "--layer", "ops.relu")
    assert code == 0 and out.strip() == run_id and "found in the store" in err
    code, out, _ = run(capsys, "runs", "show", run_id[:8])
    assert code == 0 and f"inputs      {npz}" in out.splitlines()


@pytest.mark.parametrize("command", ["run", "layers"])
def test_torchscript_without_or_with_a_missing_inputs_file_is_one_line_and_status_2(capsys, torchscript, tmp_path,
                                                                                    home, command):
    pt, _ = torchscript
    extra = ["--method", "exact"] if command == "run" else []
    for argv, message in [
        ([command, pt, *extra], "needs example inputs"),
        ([command, pt, "--inputs", str(tmp_path / "missing.npz"), *extra], "--inputs: no file at"),
        ([command, pt, "--inputs", str(tmp_path), *extra], "--inputs: a folder at"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("msa: error: ") and message in err, err
        assert "--inputs" in err and "Traceback" not in err
    assert RunStore(home).list() == []


def test_missing_inputs_file_fails_before_loading_the_model(capsys, tmp_path, monkeypatch):
    import msa_core.runs as runs

    def loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runs, "load_subject", loading)
    monkeypatch.setattr(runs, "resolve", loading)
    for command in ("run", "layers"):
        code, _, err = run(capsys, command, "mlp-digits", "--inputs", str(tmp_path / "nope.npz"))
        assert code == 2 and "--inputs: no file at" in err, err


def test_help_imports_no_torch_and_every_run_option_has_help(tmp_path):
    code = textwrap.dedent(
        """
        import sys, time
        began = time.perf_counter()
        from msa_core.cli import main
        assert main(["--help"]) == 0
        print("torch" in sys.modules, time.perf_counter() - began)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2] == "False" and "run" in done.stdout  # msa --help: no torch import
    from msa_core.cli import build_parser
    from msa_core.estimators import METHODS

    parser = build_parser("*")
    commands = next(a for a in parser._actions if a.dest == "command").choices
    parsers = [("msa", parser)]
    while parsers:  # every option of every command and subcommand says what it does
        name, current = parsers.pop()
        for action in current._actions:
            assert action.help, (name, action.dest)
            if isinstance(action.choices, dict):  # a subparsers action: its commands
                parsers += [(f"{name} {k}", p) for k, p in action.choices.items()]
    method = next(a for a in commands["run"]._actions if a.dest == "method")
    assert list(method.choices) == list(METHODS) and all(name in method.help for name in METHODS)


def test_run_with_a_preset_and_a_budget_ends_with_a_summary(capsys, model, home):
    code, out, err = run(capsys, "run", model, "--preset", "first", "--budget", "60", "--seed", "2")
    assert code == 0, err
    record = RunStore(home).get(out.strip())
    assert record.spec.preset == "first" and record.params["units_text"] == "0" and record.result.n_players == 12
    assert record.spec.budget == 60 and record.result.n_evaluations <= 60
    assert "12 players" in err and f"{record.result.n_evaluations} evaluations" in err
    gap = next(line for line in err.splitlines() if line.startswith("efficiency"))
    assert float(gap.split("=")[-1]) == pytest.approx(record.result.efficiency_gap(), abs=1e-3)
    top = record.result.unit_labels[int(record.result.total_contribution().abs().argmax())]
    assert any(line.split()[:1] == [top] for line in err.splitlines())  # the top unit, with value and stderr
    assert err.strip().endswith(f"more: msa runs show {record.short_id}")
    code, again, err = run(capsys, "run", model, "--layer", "first", "--budget", "60", "--seed", "2")
    assert code == 0 and again == out and "found in the store" in err  # a preset named as a layer: same run


def test_run_summary_of_an_on_disk_result_reads_only_the_shown_units(tmp_path, monkeypatch, capsys):
    """``msa run --max-memory`` small enough to put the moments on disk: the run is stored on disk and the
    summary's stderr column equals the in-memory run's, read from the shown units' rows only."""
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    argv = ["run", "dcgan-digits", "--permutations", "2", "--seed", "1", "--top", "3"]
    assert main([*argv, "--max-memory", "4MB"]) == 0
    bounded_out = capsys.readouterr().err  # the summary goes to stderr, the run id to stdout
    (record,) = RunStore(tmp_path / "home").list()
    assert record.result.on_disk
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "memory"))
    assert main(argv) == 0
    memory_out = capsys.readouterr().err
    table = lambda out: out[out.index("top 3 units"):out.index("more:")]  # noqa: E731
    assert table(bounded_out) == table(memory_out) and "net.1:" in table(memory_out)
