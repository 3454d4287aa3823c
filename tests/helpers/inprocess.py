"""Call a function's Lambda handler in-process with an API Gateway HTTP API (payload 2.0) event."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from observai_local.events import http_event
from observai_local.lambda_context import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
_modules: dict[str, ModuleType] = {}


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py, loaded once under a module name of its own (every function has an app.py)."""
    if name not in _modules:
        path = ROOT / "functions" / name / "app.py"
        module_name = f"observai_test_fn_{name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    text: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def data(self) -> Any:
        return self.json()["data"]

    @property
    def error(self) -> Any:
        return self.json()["error"]

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower())


def invoke(
    function: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    body: str | bytes | None = None,
    query: str = "",
    source_ip: str = "127.0.0.1",
) -> Result:
    """Build the event, call ``lambda_handler`` with a fresh context, return status, headers and body."""
    hdrs = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body)
        hdrs.setdefault("content-type", "application/json")
    event = http_event(method, path, raw_query=query, headers=hdrs, body=body, source_ip=source_ip)
    module = load_function(function)
    result = module.lambda_handler(
        event, LambdaContext(f"observai-test-{function}", memory_limit_in_mb=512, timeout_s=10)
    )
    return Result(
        status=int(result["statusCode"]),
        headers=dict(result.get("headers") or {}),
        text=result.get("body") or "",
        raw=result,
    )
