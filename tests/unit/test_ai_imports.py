"""google-genai (~0.5 s to import) stays out of every import path but a model call's: the AI modules, the
organizations' function (the AI settings routes) and the usage report import without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
sys.path.insert(0, {orgs!r})
import observai.ai.provider, observai.ai.access, observai.ai.metering, observai.ai.settings, observai.ai.gemini
import observai.telemetry.usage, observai.telemetry.usage_report
import app  # functions/orgs
from observai.ai.provider import is_configured
from observai.config import Settings
assert not is_configured(Settings())
print(sorted(m for m in sys.modules if m == "google.genai" or m.startswith("google.genai.")))
"""


def test_the_ai_modules_and_the_orgs_function_do_not_import_the_sdk() -> None:
    code = CHILD.format(orgs=str(ROOT / "functions" / "orgs"))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"STAGE": "local", "PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_sdk_is_no_dependency_of_the_layer() -> None:
    layer = (ROOT / "layers" / "common" / "requirements.txt").read_text()
    assert "google-genai" not in layer and "google-generativeai" not in layer
    orgs = (ROOT / "functions" / "orgs" / "requirements.txt").read_text()
    assert "google-genai" not in orgs


def _functions_calling_the_model() -> dict[str, dict[str, object]]:
    from observai_local.template import TEMPLATE_PATH, load_yaml

    resources = load_yaml(TEMPLATE_PATH)["Resources"]
    found = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        requirements = ROOT / str(properties["CodeUri"]) / "requirements.txt"
        if requirements.exists() and "google-genai" in requirements.read_text():
            found[logical_id] = properties
    return found


def test_the_functions_that_call_the_model_ship_the_sdk_and_may_read_the_key() -> None:
    """Those that list google-genai pin it as the development dependency does, and may read the app secret (where
    the Gemini API key is)."""
    for logical_id, properties in _functions_calling_the_model().items():
        requirements = (ROOT / str(properties["CodeUri"]) / "requirements.txt").read_text()
        assert "google-genai>=1.50,<4" in requirements, logical_id
        policies = properties.get("Policies") or []
        assert {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "AppSecretArn"}}} in policies, (
            f"{logical_id} calls the model but may not read the app secret (gemini_api_key)"
        )
