"""SkinVL's entries in transformers' Auto classes, registered without importing torch at ``import skinvl``.

The documented use is ``import skinvl`` and then ``AutoModelForImageTextToText.from_pretrained(...)``.
Registering needs the SkinVL classes, which need torch (seconds), while ``import skinvl`` must stay
cheap (the CLIs' ``--help``, the torch-free scorer). So :func:`install` registers at once when
transformers' Auto modules are already imported, and otherwise watches imports: as soon as an Auto
module (``transformers.models.auto.*_auto``) has been imported and no transformers module is still
half-initialised (registration imports ``LlavaConfig`` and SkinVL's modules, which must be complete), it registers
and stops watching. Nobody can reach the Auto classes before that moment, so the contract holds.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from types import ModuleType
from typing import Any

# Registration imports these packages' modules: none of them may be half-initialised then.
_WATCHED = ("transformers", "skinvl")
_AUTO_MODULES = tuple(f"transformers.models.auto.{name}_auto" for name in ("configuration", "modeling", "processing"))
logger = logging.getLogger(__name__)
_lock = threading.RLock()
_state = {"registered": False, "registering": False}


def register() -> None:
    """Register SkinVL and the authors' ``llava_mistral`` format with the Auto classes (imports torch)."""
    with _lock:
        if _state["registered"] or _state["registering"]:
            return
        _state["registering"] = True
        try:
            _uninstall()
            from transformers import (
                AutoConfig,
                AutoModel,
                AutoModelForImageTextToText,
                AutoProcessor,
            )

            from .configuration_skinvl import SkinVLConfig
            from .modeling_skinvl import SkinVLForConditionalGeneration, SkinVLModel
            from .original_loading import register as register_original
            from .processing_skinvl import SkinVLProcessor

            AutoConfig.register("skinvl", SkinVLConfig, exist_ok=True)
            AutoModel.register(SkinVLConfig, SkinVLModel, exist_ok=True)
            AutoModelForImageTextToText.register(SkinVLConfig, SkinVLForConditionalGeneration, exist_ok=True)
            AutoProcessor.register(SkinVLConfig, SkinVLProcessor, exist_ok=True)
            register_original()  # the authors' format: translated while loading
            _state["registered"] = True
        finally:
            _state["registering"] = False


def install(importing: str | None = None) -> None:
    """Register now if transformers' Auto modules are loaded, else as soon as they are.

    ``importing`` is the module calling this from its own import (``skinvl``), complete enough.
    """
    if _state["registered"]:
        return
    if _ready(current=importing):
        register()
    elif not any(isinstance(finder, _AutoWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AutoWatcher())


def _ready(current: str | None) -> bool:
    """An Auto module is imported and no transformers/skinvl module (but ``current``) is mid-import."""
    if not any(name in sys.modules for name in _AUTO_MODULES):
        return False
    for name, module in list(sys.modules.items()):
        if name != current and _watched(name) and _initializing(module):
            return False
    return True


def _watched(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in _WATCHED)


def _initializing(module: Any) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _AutoWatcher)]


class _AutoWatcher(importlib.abc.MetaPathFinder):
    """Wraps the loader of each transformers / skinvl module imported until registration is done."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if not _watched(fullname) or _state["registering"]:
            return None
        for finder in sys.meta_path:  # the spec the rest of the import system would find
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers when the import leaves transformers consistent."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if not _state["registered"] and _ready(current=module.__name__):
            try:
                register()
            except Exception as err:  # noqa: BLE001 - never fail the user's own transformers import
                logger.warning("skinvl could not register with transformers' Auto classes (%s: %s); "
                               "skinvl.load registers again when called.", type(err).__name__, err)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, get_resource_reader ...
        return getattr(self._loader, name)


__all__ = ["install", "register"]
