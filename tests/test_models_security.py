"""What an untrusted caller (the app) may run, what the command line and Python API still run, and how bad
model files are diagnosed. A refused reference must run no code: each recipe here leaves a marker file
when it is imported or called."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import zipfile

import pytest
import torch
from torch import nn

from msa_core.models import ModelLoadError, RecipePolicy, RecipeRefused, load_subject
from msa_core.models.policy import RECIPE_DIRS_ENV, RECIPE_MODULES_ENV

RECIPE = """
import pathlib
import torch
from torch import nn
pathlib.Path(MARKER).write_text("imported")

def build():
    pathlib.Path(MARKER).write_text("called")
    return nn.Sequential(nn.Linear(3, 2)), torch.zeros(4, 3)

def leaves():
    raise SystemExit(3)

def recurses():
    return recurses()

def interrupts():
    raise KeyboardInterrupt
"""


@pytest.fixture()
def no_opt_in(monkeypatch):
    monkeypatch.delenv(RECIPE_DIRS_ENV, raising=False)
    monkeypatch.delenv(RECIPE_MODULES_ENV, raising=False)


def _recipe(folder, name="evil_recipe"):
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{name}.marker"
    file = folder / f"{name}.py"
    file.write_text(f"MARKER = {str(marker)!r}\n" + textwrap.dedent(RECIPE))
    return file, marker


# ---------------------------------------------------------------------- untrusted: refused, nothing runs


@pytest.mark.parametrize("ref", ["os:abort", "builtins:exit", "os:system", "subprocess:getoutput"])
def test_untrusted_module_recipes_are_refused(no_opt_in, ref):
    with pytest.raises(RecipeRefused, match=f"refused to run the recipe '{ref}'.*{RECIPE_MODULES_ENV}="):
        load_subject(ref, trusted=False)


def test_refused_module_is_never_imported(no_opt_in, tmp_path, monkeypatch):
    file, marker = _recipe(tmp_path, "sidefx_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RecipeRefused):
        load_subject("sidefx_module:build", trusted=False)
    assert not marker.exists() and "sidefx_module" not in sys.modules


def test_untrusted_file_recipe_outside_the_allowed_dirs_is_refused(no_opt_in, tmp_path, monkeypatch):
    file, marker = _recipe(tmp_path / "outside")
    with pytest.raises(RecipeRefused, match="none is allowed now.*MSA_RECIPE_DIRS="):
        load_subject(f"{file}:build", trusted=False)
    monkeypatch.setenv(RECIPE_DIRS_ENV, str(tmp_path / "allowed"))
    (tmp_path / "allowed").mkdir()
    with pytest.raises(RecipeRefused, match="this file is outside them"):
        load_subject(f"{file}:build", trusted=False)
    # a path that walks out of the allowed directory is judged where it ends
    with pytest.raises(RecipeRefused):
        load_subject(f"{tmp_path / 'allowed' / '..' / 'outside' / file.name}:build", trusted=False)
    assert not marker.exists()


def test_symlink_inside_an_allowed_dir_counts_where_it_points(no_opt_in, tmp_path, monkeypatch):
    file, marker = _recipe(tmp_path / "outside")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link.py").symlink_to(file)
    monkeypatch.setenv(RECIPE_DIRS_ENV, os.pathsep.join([str(tmp_path / "elsewhere"), str(allowed)]))
    with pytest.raises(RecipeRefused):
        load_subject(f"{allowed / 'link.py'}:build", trusted=False)
    assert not marker.exists()
    # and the other way round: a link from outside into an allowed directory runs
    inside, inside_marker = _recipe(allowed, "good")
    (tmp_path / "outside" / "to_good.py").symlink_to(inside)
    subject = load_subject(f"{tmp_path / 'outside' / 'to_good.py'}:build", trusted=False)
    assert inside_marker.read_text() == "called" and subject.n_weights == 8


def test_untrusted_file_recipe_inside_an_allowed_dir_runs(no_opt_in, tmp_path, monkeypatch):
    file, marker = _recipe(tmp_path / "recipes")
    monkeypatch.setenv(RECIPE_DIRS_ENV, str(tmp_path / "recipes"))
    subject = load_subject(f"{file}:build", trusted=False)
    assert marker.read_text() == "called" and subject.inputs.shape == (4, 3)


def test_module_allowlist_exact_and_package_entries():
    policy = RecipePolicy.from_env({RECIPE_MODULES_ENV: "labrecipes.mnist, zoo.*"})
    assert policy.modules == ("labrecipes.mnist", "zoo.*") and not policy.trusted
    assert policy.module_allowed("labrecipes.mnist")
    assert not policy.module_allowed("labrecipes") and not policy.module_allowed("labrecipes.mnist2")
    assert policy.module_allowed("zoo") and policy.module_allowed("zoo.vision.resnet")
    assert not policy.module_allowed("zoology") and not policy.module_allowed("os")
    assert RecipePolicy.from_env({}).modules == () and RecipePolicy.from_env({}).dirs == ()


def test_allowed_module_recipe_runs_untrusted(tmp_path, monkeypatch):
    _, marker = _recipe(tmp_path, "lab_recipe_ok")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(RECIPE_MODULES_ENV, "lab_recipe_ok")
    monkeypatch.delenv(RECIPE_DIRS_ENV, raising=False)
    assert load_subject("lab_recipe_ok:build", trusted=False).n_weights == 8
    assert marker.read_text() == "called"


def test_hf_folder_with_its_own_code_is_refused_untrusted(no_opt_in, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    marker = tmp_path / "remote_code_ran"
    (folder / "modeling_evil.py").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n")
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "evil", "auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilModel"}}))
    with pytest.raises(RecipeRefused, match="auto_map.*trust_remote_code"):
        load_subject(str(folder), trusted=False)
    assert not marker.exists()


# ---------------------------------------------------------------------- trusted: the CLI and the Python API


def test_python_api_and_cli_stay_trusted(no_opt_in, tmp_path, capsys):
    file, marker = _recipe(tmp_path / "anywhere")
    assert load_subject(f"{file}:build").n_weights == 8 and marker.read_text() == "called"
    marker.unlink()
    from msa_core.cli import main

    assert main(["layers", f"{file}:build"]) == 0
    assert marker.read_text() == "called" and "Linear" in capsys.readouterr().out


def test_recipe_exit_and_recursion_are_load_errors(tmp_path):
    file, _ = _recipe(tmp_path)
    with pytest.raises(ModelLoadError, match=r"raised SystemExit \(the code called exit\(3\)\)"):
        load_subject(f"{file}:leaves")
    with pytest.raises(ModelLoadError, match="raised RecursionError"):
        load_subject(f"{file}:recurses")
    # KeyboardInterrupt passes: on the command line it is the user's Ctrl-C (the app catches it itself)
    with pytest.raises(KeyboardInterrupt):
        load_subject(f"{file}:interrupts")


def test_one_model_load_error_class():
    import msa_core
    import msa_core.runs
    import msa_core.runs.spec

    assert msa_core.ModelLoadError is msa_core.runs.ModelLoadError is msa_core.runs.spec.ModelLoadError
    assert msa_core.runs.ModelLoadError is ModelLoadError and issubclass(RecipeRefused, ModelLoadError)


# ---------------------------------------------------------------------- bad model files


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, found", [
    ("model.pt", b"this is not a model\n", "found: text starting with 'this is not a model'"),
    ("model.pt", b"", r"found: an empty file \(0 bytes\)"),
    ("model.pt2", b"", r"found: an empty file \(0 bytes\)"),
    ("model.pt", bytes(range(7, 71)), "found: binary data starting with 0x0708090a0b0c0d0e, neither a zip"),
    ("model.pt2", b"# a README\nsaved by mistake", "found: text starting with '# a README saved by mistake'"),
])
def test_files_that_are_no_model_format(tmp_path, name, data, found):
    path = _write(tmp_path / name, data)
    with pytest.raises(ModelLoadError, match=f"is not a PyTorch model file \\({found}") as info:
        load_subject(str(path), inputs=torch.zeros(2, 3))
    assert "pickled" not in str(info.value)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ModelLoadError, match=r"not a PyTorch model file \(found: a zip archive without data.pkl "
                                             r"\(holds: notes.txt\)\)"):
        load_subject(str(path), inputs=torch.zeros(2, 3))


def test_export_program_with_the_wrong_suffix(tmp_path):
    path = tmp_path / "exported.pt"
    torch.export.save(torch.export.export(nn.Linear(3, 2), (torch.zeros(1, 3),)), str(path))
    with pytest.raises(ModelLoadError, match="is a torch.export program, not TorchScript: give it the suffix .pt2"):
        load_subject(str(path), inputs=torch.zeros(1, 3))


class _Payload:
    """Unpickling it writes a marker file: stands for any code a crafted file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _export_archive(tmp_path, name="plain.pt2"):
    class WithConstant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.register_buffer("scale", torch.ones(2))

        def forward(self, x):
            return self.fc(x) * self.scale

    path = tmp_path / name
    torch.export.save(torch.export.export(WithConstant().eval(), (torch.zeros(4, 3),)), str(path))
    return path


def _rewrite(source, target, change):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))
    return target


@pytest.mark.parametrize("attack", ["pickled weight", "pickled example inputs", "native code member"])
def test_crafted_export_archives_are_refused_before_torch_reads_them(tmp_path, attack):
    plain = _export_archive(tmp_path)
    assert load_subject(str(plain)).inputs.shape == (4, 3)  # a plain archive loads, with its example inputs
    marker = tmp_path / "payload_ran"
    payload = tmp_path / "payload.pt"
    torch.save(_Payload(marker), payload)

    def change(name, data):
        if attack == "pickled weight" and name.endswith("weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        if attack == "pickled weight" and name.endswith("data/weights/weight_0"):
            return payload.read_bytes()
        if attack == "pickled example inputs" and "sample_inputs" in name:
            return payload.read_bytes()
        return data

    crafted = _rewrite(plain, tmp_path / "crafted.pt2", change)
    if attack == "native code member":
        with zipfile.ZipFile(crafted, "a") as archive:
            archive.writestr("plain/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(ModelLoadError) as info:
        load_subject(str(crafted))
    assert not marker.exists(), "the crafted archive ran its payload"
    assert "torch would unpickle" in str(info.value) and "refused to load" in str(info.value)


class EvilNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


def test_pickled_module_is_still_refused_and_named(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    monkeypatch.setattr(EvilNet, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "EvilNet", EvilNet, raising=False)
    torch.save(EvilNet(), path)
    with pytest.raises(ModelLoadError, match=r"pickled Python object \(it needs __main__.EvilNet\)"):
        load_subject(str(path), inputs=torch.zeros(2, 2), trusted=False)


# ---------------------------------------------------------------------- escaping and uploads


def test_md_escape_leaves_no_markdown_syntax():
    import re

    from ui.text import md_escape

    cases = ["__main__.EvilNet", "**bold** `code` [link](http://x) <b>x</b> $x$ :smile: ~~s~~ a|b &amp;", "a\\_b",
             "- item\n+ item\n1. first\n12) second\n# heading\n> quote\n---\n==="]
    for text in cases:
        escaped = md_escape(text)
        tokens = re.findall(r"\\.|.", escaped, re.S)
        # characters that are syntax anywhere always come escaped, and dropping the escapes gives the text back
        assert all(len(token) == 2 or token not in "\\`*_[]<>$:~|&" for token in tokens), text
        assert "".join(token[-1] for token in tokens) == text
        # no line starts with a block marker (list, heading, quote, setext underline, ordered list)
        assert not re.search(r"^\s*([#>+=-]|\d+[.)])", escaped, re.M), escaped
    assert md_escape("mlp-digits") == "mlp-digits" and md_escape("torch.load(path)") == "torch.load(path)"


def test_uploads_stay_in_the_uploads_folder(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from ui.resources import save_upload

    monkeypatch.setenv("MSA_HOME", str(tmp_path))
    uploads = (tmp_path / "uploads").resolve()
    for name in ["../../etc/cron.d/x.pt", "..\\..\\evil.pt", "..", ".hidden.pt", "r.py:build", "/abs/m.pt2", ""]:
        path = save_upload(name, b"data")
        assert os.path.dirname(os.path.realpath(path)) == str(uploads), name
        base = os.path.basename(path)
        assert ":" not in base and "/" not in base and not base.startswith(".")
    assert open(save_upload("m.pt", b"abc"), "rb").read() == b"abc"


def test_builtin_sweep_recipes_pass_untrusted_but_nothing_else_in_their_module(no_opt_in):
    from msa_core.models.policy import RecipePolicy

    policy = RecipePolicy.from_env()
    policy.check_module("msa_core.zoo.sweep:mlp_fashion_l1_n25", "msa_core.zoo.sweep")  # no error
    for ref in ("msa_core.zoo.sweep:sweep_recipe", "msa_core.zoo.sweep:load_weights", "msa_core.zoo:load_weights"):
        with pytest.raises(RecipeRefused):
            policy.check_module(ref, ref.partition(":")[0])


def test_an_edited_module_recipe_is_reloaded_and_gets_a_new_run_key(tmp_path, monkeypatch):
    import os
    import time

    from msa_core.runs.spec import RunSpec, resolve

    def write(out_features: int) -> None:
        file.write_text(
            "import torch\n"
            "def make():\n"
            f"    return {{'model': torch.nn.Sequential(torch.nn.Linear(3, {out_features})), 'inputs': torch.ones(4, 3)}}\n"
        )

    file = tmp_path / "edited_recipe_mod.py"
    write(2)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = load_subject("edited_recipe_mod:make")
    key_before = resolve(RunSpec("edited_recipe_mod:make", units=("0",))).key
    write(5)
    os.utime(file, (time.time() + 5, time.time() + 5))  # a new mtime, so no stale bytecode is used
    second = load_subject("edited_recipe_mod:make")
    assert first.model[0].out_features == 2 and second.model[0].out_features == 5
    assert resolve(RunSpec("edited_recipe_mod:make", units=("0",))).key != key_before
