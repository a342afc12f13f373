"""What a model file holds, judged from its bytes before torch parses it.

* :func:`sniff`: the format of a file from its first bytes (empty, text, zip archive, pickle, ...), so a text
  file renamed ``model.pt`` is "not a PyTorch model file (found: text starting with '...')" rather than a
  pickle or zip-reader error.
* :func:`check_export_archive`: ``torch.export.load`` unpickles some archive members *without*
  ``weights_only`` (weights or constants flagged ``use_pickle``, custom and opaque objects, legacy
  ``.pt`` members, and example inputs when the safe load fails) and loads AOTInductor shared libraries.
  A crafted ``.pt2`` could therefore run arbitrary code. Only archives made of plain tensors and JSON pass;
  their example inputs must load with ``weights_only=True``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from .subject import ModelLoadError

__all__ = ["sniff", "not_a_model_file", "check_export_archive"]

# Members of a torch.export.save archive (below its root folder) that hold only JSON, raw tensor bytes or
# small text; anything else (aotinductor/, custom_obj_*, opaque_obj_*, legacy *.pt, executorch/, ...) is refused.
_PLAIN_MEMBERS = re.compile(
    r"^(\.data/(version|serialization_id)|archive_format|archive_version|byteorder|version"
    r"|models/[\w.-]+\.json|data/weights/(weight_\d+|[\w.-]*weights_config\.json)"
    r"|data/constants/(tensor_\d+|[\w.-]*constants_config\.json)|extra/[^/]+)$"
)
_SAMPLE_INPUTS = re.compile(r"^data/sample_inputs/[\w.-]+\.pt$")


def _printable(data: bytes) -> str | None:
    """The bytes as text when they read as mostly printable UTF-8 (a text file), else None."""
    text = data.decode("utf-8", errors="replace")
    shown = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and shown >= 0.9 * len(text) else None


def sniff(path: Path) -> tuple[str, str]:
    """What a model file holds, from its first bytes: ``(kind, description)``.

    ``kind`` is ``"torchscript"`` or ``"export"`` (a zip archive written by ``torch.jit.save`` /
    ``torch.export.save``), ``"pickle"`` (``torch.save``: a zip with ``data.pkl`` or a legacy pickle) or
    ``"other"``; ``description`` says what was found ("an empty file", "text starting with '...'",
    "a zip archive without data.pkl (holds: ...)", "binary data starting with 0x...").
    """

    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return "other", f"a file that cannot be read ({error.strerror or error})"
    if not head:
        return "other", "an empty file (0 bytes)"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "other", "a damaged zip archive"
        leaves = {name.rsplit("/", 1)[-1] for name in names}
        if any("serialized_exported_program" in name or name.endswith("/models/model.json") for name in names):
            return "export", "a torch.export archive"
        if "constants.pkl" in leaves or any("/code/" in name for name in names):
            return "torchscript", "a TorchScript archive"
        if "data.pkl" in leaves:
            return "pickle", "a torch.save archive (data.pkl)"
        listed = ", ".join(names[:5]) + (f", ... ({len(names)} files)" if len(names) > 5 else "")
        return "other", f"a zip archive without data.pkl (holds: {listed or 'nothing'})"
    if head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5 (legacy torch.save starts so too)
        return "pickle", "a pickle"
    text = _printable(head)
    if text is not None:
        preview = text[:40].replace("\n", " ").strip()
        return "other", f"text starting with {preview!r}"
    return "other", f"binary data starting with 0x{head[:8].hex()}, neither a zip archive nor a pickle"


def not_a_model_file(path: Path, found: str) -> ModelLoadError:
    """The error for a file that is no PyTorch model format at all (``found``: what :func:`sniff` saw)."""
    return ModelLoadError(
        f"{str(path)!r} is not a PyTorch model file (found: {found}). Give a TorchScript file (torch.jit.save, "
        ".pt), a torch.export program (torch.export.save, .pt2) or a recipe 'file.py:function'"
    )


def _pickled_entries(config: Any) -> list[str]:
    """Names of the entries of a weights/constants config that torch would unpickle (``use_pickle`` or a
    payload that is not a plain tensor file)."""
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    return [
        str(name) for name, meta in (entries.items() if isinstance(entries, dict) else [])
        if not isinstance(meta, dict) or meta.get("use_pickle")
        or not re.fullmatch(r"(weight|tensor)_\d+", str(meta.get("path_name", "")))
    ]


def check_export_archive(path: Path) -> None:
    """Raise :class:`ModelLoadError` unless the ``.pt2`` at ``path`` holds only plain tensors and JSON.

    Called before ``torch.export.load``, for every caller: unpickling untrusted bytes is never safe.
    """
    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            refused = []
            for name in names:
                inner = name.split("/", 1)[1] if "/" in name else name
                if name.endswith("/") or _PLAIN_MEMBERS.match(inner):
                    if inner.endswith("_config.json"):
                        try:
                            config = json.loads(archive.read(name))
                        except ValueError:
                            refused.append(f"{name} (not JSON)")
                            continue
                        refused += [f"{name}: {entry}" for entry in _pickled_entries(config)]
                elif _SAMPLE_INPUTS.match(inner):
                    try:
                        torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
                    except Exception as error:  # noqa: BLE001 - torch would retry without weights_only
                        found = re.search(r"GLOBAL ([\w.]+)", str(error))
                        refused.append(f"{name} (example inputs that are not plain tensors"
                                       f"{': they need ' + found.group(1) if found else ''})")
                else:
                    refused.append(name)
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelLoadError(f"could not read {str(path)!r} as a torch.export archive: {error}") from None
    if refused:
        listed = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise ModelLoadError(
            f"refused to load {str(path)!r}: the torch.export archive holds {listed}, which torch would unpickle "
            "(it could run arbitrary code) or load as native code. msa_core loads .pt2 files made of plain "
            "tensors and JSON (torch.export.save of a model whose weights and constants are tensors)"
        )
