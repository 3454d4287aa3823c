"""SimilarIncidentsFunction and AskFunction start without google-genai (about a second to import here): the SDK is
imported by a model call only (an incident embedded on the fly, a question asked), never at cold start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import observai.ai.similar, observai.ai.ask, observai.ai.similar_store, observai.ai.ask_store
assert callable(module.lambda_handler)
print(sorted(m for m in sys.modules if m == "google.genai" or m.startswith("google.genai.")))
"""


@pytest.mark.parametrize("function", ["similar_incidents", "ask"])
def test_the_handler_imports_without_the_sdk(function: str) -> None:
    code = CHILD.format(path=str(ROOT / "functions" / function / "app.py"))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"STAGE": "local", "PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
