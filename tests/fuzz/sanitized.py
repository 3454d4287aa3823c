"""The sanitizer build of the C extensions (``make fuzz``: build/fuzz/lib), loaded in place of the in-place ones.

The harnesses import this first: it puts the instrumented ``_wire`` and ``_rows`` in ``sys.modules`` under their
package names, so ``wire.py`` and ``copy_rows.py`` find them there and the normal ``.so`` files are never read.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "build" / "fuzz" / "lib"
MODULES = ("observai.telemetry.otlp._wire", "observai.telemetry._rows")


def load() -> None:
    for name in MODULES:
        folder = BUILD.joinpath(*name.split(".")[:-1])
        found = [p for p in folder.glob(name.rsplit(".", 1)[1] + ".*") if p.suffix in (".so", ".pyd")]
        if not found:
            raise SystemExit(f"{name}: no sanitizer build in {folder} (make fuzz builds it)")
        if name in sys.modules:
            raise SystemExit(f"{name} was imported before the sanitizer build was loaded")
        loader = importlib.machinery.ExtensionFileLoader(name, str(found[0]))
        spec = importlib.util.spec_from_file_location(name, found[0], loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[name] = module


def check_loaded() -> None:
    """The fast paths run the sanitizer build (not the in-place .so, not the Python fallback)."""
    from observai.telemetry import copy_rows
    from observai.telemetry.otlp import wire

    for module in (wire._wire, copy_rows._rows):
        assert module is not None and Path(module.__file__ or "").is_relative_to(BUILD), module
