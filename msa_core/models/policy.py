"""Which model references may run code: the recipe policy for untrusted callers (the app's browser users).

A recipe (``package.module:function`` or ``path/to/file.py:function``) imports and calls Python code, and a
Hugging Face folder whose ``config.json`` has an ``auto_map`` asks to run the folder's own ``.py`` files.
From the command line and the Python API the user is the one running the code, so every reference is allowed
(``trusted=True``, the default of :func:`msa_core.models.load_subject`). The app passes ``trusted=False``:
then the server operator decides, through two environment variables read at each load:

* ``MSA_RECIPE_DIRS``: directories (separated by ``os.pathsep``, ``:`` on Linux) whose ``file.py:function``
  recipes may run. The file's real path (symlinks resolved) must lie inside one of them.
* ``MSA_RECIPE_MODULES``: comma-separated module names whose ``module:function`` recipes may run; an entry
  ``pkg.*`` allows ``pkg`` and every module under it. The module is checked before it is imported.

Everything else that runs code is refused with one message saying how the operator opts in. Model files
never run Python: TorchScript and ``torch.export`` programs hold torch operators only, and tensors are
unpickled with ``weights_only=True`` (a pickled ``nn.Module`` is refused whoever asks).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .subject import ModelLoadError

__all__ = ["RecipePolicy", "RecipeRefused", "RECIPE_DIRS_ENV", "RECIPE_MODULES_ENV"]

RECIPE_DIRS_ENV = "MSA_RECIPE_DIRS"
RECIPE_MODULES_ENV = "MSA_RECIPE_MODULES"
_OPT_IN = (
    f"To allow recipes, the operator starts the app with {RECIPE_DIRS_ENV}=/path/to/recipes (directories "
    f"separated by {os.pathsep!r}) or {RECIPE_MODULES_ENV}=mypkg.recipes (comma-separated; 'mypkg.*' for a "
    "package); on the command line and in Python, recipes always run"
)


# Recipes that ship with msa_core and take no user input, so the app may open them (the findings report
# cites the Fashion-MNIST width sweep through them): module -> the function names allowed.
# ``msa_core.zoo.paper_gan:paper_gan`` reads its weights from a path the operator sets in the environment.
BUILTIN_RECIPES = {"msa_core.zoo.sweep": re.compile(r"^mlp_fashion(?:_l1|_l2)?_n\d+$"),
                   "msa_core.zoo.paper_gan": re.compile(r"^paper_gan$")}


class RecipeRefused(ModelLoadError):
    """An untrusted caller named code the server operator has not allowed (a :class:`ModelLoadError`)."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class RecipePolicy:
    """What an untrusted caller may run.

    Attributes:
        trusted: True: everything (command line, Python API); False: only what ``dirs`` / ``modules`` allow.
        dirs: resolved directories whose ``file.py:function`` recipes may run.
        modules: allowed module names (``"pkg.*"``: the package and its submodules).
    """

    trusted: bool = True
    dirs: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RecipePolicy":
        """The untrusted policy from ``MSA_RECIPE_DIRS`` and ``MSA_RECIPE_MODULES`` (``os.environ`` by default)."""
        environ = os.environ if environ is None else environ
        dirs = tuple(
            Path(part).expanduser().resolve()
            for part in environ.get(RECIPE_DIRS_ENV, "").split(os.pathsep)
            if part.strip()
        )
        modules = tuple(part.strip() for part in environ.get(RECIPE_MODULES_ENV, "").split(",") if part.strip())
        return cls(trusted=False, dirs=dirs, modules=modules)

    @classmethod
    def for_caller(cls, trusted: "bool | RecipePolicy") -> "RecipePolicy":
        """``True`` -> the trusted policy, ``False`` -> :meth:`from_env`, a policy -> itself."""
        if isinstance(trusted, RecipePolicy):
            return trusted
        return cls() if trusted else cls.from_env()

    def module_allowed(self, module_name: str) -> bool:
        """True when ``module:function`` recipes of ``module_name`` may run."""
        if self.trusted:
            return True
        for entry in self.modules:
            if entry.endswith(".*"):
                package = entry[:-2]
                if module_name == package or module_name.startswith(package + "."):
                    return True
            elif module_name == entry:
                return True
        return False

    def file_allowed(self, file: Path) -> bool:
        """True when ``file.py:function`` recipes of ``file`` (its real path, symlinks resolved) may run."""
        if self.trusted:
            return True
        real = Path(file).expanduser().resolve()
        return any(_inside(real, folder) for folder in self.dirs)

    def check_module(self, ref: str, module_name: str) -> None:
        """Raise :class:`RecipeRefused` unless the module recipe ``ref`` may run (before any import)."""
        builtin = BUILTIN_RECIPES.get(module_name)
        if builtin is not None and builtin.match(ref.partition(":")[2]):
            return
        if not self.module_allowed(module_name):
            raise RecipeRefused(
                f"refused to run the recipe {ref!r}: Python recipes typed in the browser run only from modules the "
                f"server's operator allowed, and {module_name!r} is not one of them. {_OPT_IN}"
            )

    def check_file(self, ref: str, file: Path) -> None:
        """Raise :class:`RecipeRefused` unless the file recipe ``ref`` may run (before the file is read)."""
        if not self.file_allowed(file):
            where = "this file is outside them" if self.dirs else "none is allowed now"
            raise RecipeRefused(
                f"refused to run the recipe {ref!r}: Python recipe files typed in the browser run only from "
                f"directories the server's operator allowed ({where}; a symlink counts where it points). {_OPT_IN}"
            )

    def check_hf_dir(self, directory: Path) -> None:
        """Raise :class:`RecipeRefused` for a Hugging Face folder that asks to run its own code (``auto_map``)
        when untrusted; transformers is also never told ``trust_remote_code=True``."""
        if self.trusted:
            return
        for name in ("config.json", "tokenizer_config.json"):
            file = Path(directory) / name
            try:
                data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
            except (OSError, ValueError, UnicodeDecodeError):
                continue  # an unreadable config is the loader's to report
            if isinstance(data, dict) and data.get("auto_map"):
                raise RecipeRefused(
                    f"refused to load {str(directory)!r}: its {name} has an 'auto_map', i.e. the folder asks to run "
                    "its own Python code (trust_remote_code), which this server never does for a browser user. "
                    "Load it from the command line or the Python API, or save it with a transformers architecture"
                )
