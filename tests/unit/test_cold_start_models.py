"""Cold start: importing a function builds only the pydantic models every invocation of it needs.

A route's models (its body, its response) are built at their first use (``defer_build``): a function with ten
routes no longer builds the validators of all ten at import. What every request uses (the settings, the error and
page envelope) is built at import, where Lambda's init runs it; so are the result models of the scheduled jobs,
which every run uses. A new model built at import fails here: give it ``defer_build=True`` (or add it below, with
the reason).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Built at import on purpose: every invocation of the functions that import them uses them.
BUILT_AT_IMPORT = {
    "observai.config.Settings",  # every request and run reads the settings
    "observai.http.envelope.ErrorBody",  # every response is the envelope
    "observai.http.envelope.Meta",
    "observai.http.envelope.Envelope",
    "observai.health.Liveness",  # the health routes' whole work
    "observai.health.Readiness",
}
# Modules whose models are the results of scheduled jobs (every run builds its report).
JOB_RESULT_MODULES = (
    "observai.housekeeping",
    "observai.retention.cleanup",
    "observai.retention.purge",
    "observai.telemetry.partitions",
    "observai.anomalies.sweep",
    "observai.anomalies.job",
    "observai.metrics.rollup",
)

CHILD = """
import importlib.util, json, sys
from pydantic import BaseModel
for path in sys.argv[1:]:
    name = "app_" + path.split("/")[-2]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, path.rsplit("/", 1)[0])
    spec.loader.exec_module(module)
    sys.path.pop(0)

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

built = sorted({
    f"{m.__module__}.{m.__qualname__}"
    for m in subclasses(BaseModel)
    if m.__module__.startswith("observai") and m.__dict__.get("__pydantic_complete__")
    and not m.__pydantic_generic_metadata__.get("origin")
})
print(json.dumps(built))
"""


def test_importing_every_function_builds_only_the_models_every_invocation_needs() -> None:
    # Given every function's handler module, imported in one fresh interpreter
    apps = sorted(str(path) for path in (ROOT / "functions").glob("*/app.py"))
    assert len(apps) > 30
    # When the imports are done
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *apps],
        capture_output=True,
        text=True,
        timeout=300,
        env={"STAGE": "local", "PATH": "", "POWERTOOLS_TRACE_DISABLED": "true", "PYDANTIC_DISABLE_PLUGINS": "__all__"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    built = set(json.loads(result.stdout.strip().splitlines()[-1]))
    # Then the only models built are those every invocation uses
    unexpected = sorted(name for name in built - BUILT_AT_IMPORT if not name.startswith(JOB_RESULT_MODULES))
    assert unexpected == [], f"built at import, give them defer_build=True: {unexpected}"
    assert {"observai.config.Settings", "observai.http.envelope.ErrorBody"} <= built
