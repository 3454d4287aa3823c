"""Load a function's handler from its file and invoke it in-process with the function's environment.

Each handler module is loaded by file path under its own module name (``observai_fn_<LogicalId>``),
since several functions have an ``app.py``. One global lock runs one invocation at a time, like a
single Lambda container, so the environment can be applied to ``os.environ`` for the call.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from observai_local.lambda_context import LambdaContext
from observai_local.template import FunctionSpec, Template

# One invocation at a time across the server and the scheduler, as in one Lambda container.
INVOCATION_LOCK = threading.RLock()

# Taken from the shell when set, over the template's values (which are deploy-time parameters).
PASS_THROUGH = (
    "SUPABASE_URL",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_JWKS_URL",
    "S3_ENDPOINT_URL",
    # Paging: PagerDuty's Events API URL (a local stand-in under `make dev`) and the e-mail sender.
    "PAGERDUTY_EVENTS_URL",
    "NOTIFY_EMAIL_SENDER",
    "PUBLIC_BASE_URL",  # where acknowledge/resolve links point (`serve` sets it to its own URL when unset)
    # AI insights (observai.ai): the Gemini API key (unset: the AI features are off and their routes say so), and
    # the API's base URL (a local stand-in) and model names when the shell sets them.
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "AI_GENERATION_MODEL",
    "AI_EMBEDDING_MODEL",
)
# Queues and buckets the template creates at deploy time: locally only the shell's (or none).
DEPLOYED_RESOURCE_SETTINGS = (
    "SPOOL_QUEUE_URL",
    "SPOOL_BUCKET",
    "EXPORT_QUEUE_URL",
    "EXPORT_BUCKET",
    "ALERT_TIMER_QUEUE_URL",
    "WEBHOOK_QUEUE_URL",
    "NOTIFY_QUEUE_URL",
    "ESCALATION_QUEUE_URL",
    # The KMS key sealing channel secrets: locally none (the development key of observai.notify.secrets), so
    # `make dev` needs no AWS account; the shell's when set (a real key, or moto's server).
    "NOTIFY_KMS_KEY_ID",
    "AI_TASK_QUEUE_URL",
)

Environment = Mapping[str, str | None]  # None removes the variable


def local_overrides(stage: str = "local", database_url: str | None = None) -> dict[str, str | None]:
    """What running locally changes in a function's template environment."""
    overrides: dict[str, str | None] = {
        "STAGE": stage,
        "APP_SECRET_ARN": None,  # secrets come from the environment locally, never Secrets Manager
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    if database_url:
        overrides["DATABASE_URL"] = database_url
    for name in PASS_THROUGH:
        if os.environ.get(name):
            overrides[name] = os.environ[name]
    # The template's queues and buckets are deploy-time resources: locally, only the shell's (or none: then a
    # batch the database cannot take gets 503 Retry-After instead of being spooled, and exports answer 503).
    for name in DEPLOYED_RESOURCE_SETTINGS:
        overrides[name] = os.environ.get(name) or None
    # Webhook receivers of `make dev` and the tests run on localhost, which the SSRF guard refuses unless allowed
    # (it never allows loopback in dev or prod, whatever the setting). The shell's value wins (false: test the guard).
    if stage in ("local", "test"):
        overrides["WEBHOOK_ALLOW_LOOPBACK"] = os.environ.get("WEBHOOK_ALLOW_LOOPBACK") or "true"
        # Slack and PagerDuty stand-ins of `make dev` on localhost (observai.notify.channels), as for webhooks.
        overrides["NOTIFY_ALLOW_LOOPBACK"] = os.environ.get("NOTIFY_ALLOW_LOOPBACK") or "true"
    return overrides


@contextmanager
def applied_environment(env: Environment) -> Iterator[None]:
    """Set (or remove, for None) these variables in os.environ for the block; restore them after. Only the ones
    that differ are touched (each change is a putenv: a process that keeps a function's environment, like the
    benchmark, pays nothing per call)."""
    saved = {name: current for name, value in env.items() if (current := os.environ.get(name)) != value}
    try:
        for name in saved:
            value = env[name]
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class FunctionError(RuntimeError):
    """The function cannot be loaded (missing file or handler)."""


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def to_http_response(result: Any) -> HttpResponse:
    """Turn a handler's return value into the HTTP response API Gateway (payload format 2.0) would send."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
        body = result.get("body")
        raw = b"" if body is None else str(body).encode()
        if result.get("isBase64Encoded") and raw:
            raw = base64.b64decode(raw)
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        return HttpResponse(int(result["statusCode"]), headers, raw)
    # Inferred format: any other JSON value is the body of a 200.
    body = result if isinstance(result, str) else json.dumps(result)
    return HttpResponse(200, [("content-type", "application/json")], body.encode())


class Invoker:
    """Loads and invokes the template's functions in-process."""

    def __init__(self, template: Template, overrides: Environment | None = None) -> None:
        self.template = template
        self.overrides = dict(overrides if overrides is not None else local_overrides())
        self._modules: dict[str, ModuleType] = {}

    def environment(self, spec: FunctionSpec) -> dict[str, str | None]:
        runtime = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
        return {**runtime, **spec.environment, **self.overrides}

    def module(self, logical_id: str) -> ModuleType:
        """The function's handler module, imported (cold start) with its environment on first use."""
        spec = self.template.function(logical_id)
        with INVOCATION_LOCK, applied_environment(self.environment(spec)):
            return self._module(spec)

    def _module(self, spec: FunctionSpec) -> ModuleType:
        if spec.logical_id in self._modules:
            return self._modules[spec.logical_id]
        path = spec.handler_file
        if not path.is_file():
            raise FunctionError(f"{spec.logical_id}: handler file {path} does not exist")
        name = f"observai_fn_{spec.logical_id}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise FunctionError(f"{spec.logical_id}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        sys.path.insert(0, str(spec.code_uri))  # sibling modules of the handler, as in Lambda's task root
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.path.remove(str(spec.code_uri))
        self._modules[spec.logical_id] = module
        return module

    def handler(self, spec: FunctionSpec) -> Callable[[Any, LambdaContext], Any]:
        handler = getattr(self._module(spec), spec.handler_name, None)
        if not callable(handler):
            raise FunctionError(f"{spec.logical_id}: {spec.handler_file} has no function {spec.handler_name}")
        return handler

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call the function's handler with ``event`` and a fresh context; return what it returns."""
        spec = self.template.function(logical_id)
        with INVOCATION_LOCK, applied_environment(self.environment(spec)):
            handler = self.handler(spec)
            context = LambdaContext(spec.function_name, memory_limit_in_mb=spec.memory_size, timeout_s=spec.timeout)
            started = time.monotonic()
            try:
                return handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > spec.timeout:
                    print(
                        f"WARNING {logical_id} ran {elapsed:.1f}s, over its {spec.timeout}s timeout:"
                        " Lambda would have stopped it (Task timed out)",
                        file=sys.stderr,
                    )
