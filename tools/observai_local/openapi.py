"""One OpenAPI document for the whole HTTP API, generated from the functions' resolvers.

    python -m observai_local.openapi            # print the document
    python -m observai_local.openapi --write    # write docs/openapi.json
    python -m observai_local.openapi --check    # exit 1 when docs/openapi.json is stale

Each HTTP function's handler module is loaded by file path (the functions of template.yaml that have
HttpApi routes), its Powertools resolver renders its own document, and the documents are merged: paths
and operations must not collide, and a component (schema) defined by several functions must be the same
everywhere, else generation fails. Two things the resolvers cannot know are added after the merge:

* security per operation, from the route's auth dependency: ``CurrentUser`` accepts only a Supabase JWT,
  ``CurrentPrincipal`` a JWT or an API key, a route with neither needs nothing (``security: []``);
* errors as they really leave: every error is the envelope (``ErrorEnvelope``), including request
  validation (Powertools documents its own ``HTTPValidationError``, which our handler replaces).

Settings are read lazily, so loading the handlers needs no database; STAGE=local is set while loading.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any

from observai_local.functions import applied_environment
from observai_local.template import ROOT, FunctionSpec, Template, load_template

OUTPUT_PATH = ROOT / "docs" / "openapi.json"
TITLE = "ObservAI Hub API"
DESCRIPTION = (
    "Multi-tenant observability backend. Every JSON response is the envelope "
    "`{data, error: {code, message, details}, meta}`; lists are cursor-paginated "
    "(`?cursor=` from `meta.next_cursor`, `?limit=`). People authenticate with a Supabase Auth "
    "access token (`Authorization: Bearer <jwt>`), programs with a project API key (`x-api-key`)."
)
BEARER = "supabaseJwt"
API_KEY = "apiKey"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_ENVELOPE = "ErrorEnvelope"
# Powertools' own validation-error models: our exception handler answers with the envelope instead.
POWERTOOLS_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
# Operations that never touch the database (no 503).
NO_DATABASE = {("get", "/v1/health")}
# Operations that answer HTML pages (the signed incident action links): their route declares every answer itself,
# none of them the JSON envelope.
HTML_OPERATIONS = {("get", "/v1/actions/incidents/{token}"), ("post", "/v1/actions/incidents/{token}")}
LOAD_ENVIRONMENT = {
    "STAGE": "local",
    "APP_SECRET_ARN": None,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


class OpenApiConflict(RuntimeError):
    """Two functions document the same operation, operation id or component differently."""


# ---------------------------------------------------------------------------------------------- loading


@contextmanager
def _on_path(path: Path) -> Iterator[None]:
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))


def load_module(spec: FunctionSpec, prefix: str = "observai_openapi_") -> ModuleType:
    """Import the function's handler file under a module name of its own (several are called app.py)."""
    name = f"{prefix}{spec.logical_id}"
    path = spec.handler_file
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"{spec.logical_id}: cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        with applied_environment(LOAD_ENVIRONMENT), _on_path(spec.code_uri):
            module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def http_functions(template: Template) -> list[FunctionSpec]:
    """The template's functions that serve HttpApi routes, by logical id."""
    return [spec for _, spec in sorted(template.functions.items()) if spec.routes]


def load_apps(template: Template | None = None) -> dict[str, Any]:
    """logical id → the function's resolver (its module's ``app``)."""
    template = template or load_template()
    apps: dict[str, Any] = {}
    for spec in http_functions(template):
        app = getattr(load_module(spec), "app", None)
        if app is None or not hasattr(app, "get_openapi_json_schema"):
            raise RuntimeError(f"{spec.logical_id}: {spec.handler_file} has HttpApi routes but no resolver `app`")
        apps[spec.logical_id] = app
    return apps


def registered_routes(app: Any) -> list[Any]:
    """The Powertools Route objects of a resolver (static and dynamic)."""
    return [*app._static_routes, *app._dynamic_routes]


# ---------------------------------------------------------------------------------------------- rendering


def _openapi_arguments() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, HTTPBearer, Server, ServerVariable
    from observai import __version__

    return {
        "title": TITLE,
        "version": __version__,
        "description": DESCRIPTION,
        "servers": [
            Server(
                url="https://{apiId}.execute-api.{region}.amazonaws.com",
                description="API Gateway HTTP API ($default stage)",
                variables={"apiId": ServerVariable(default="api-id"), "region": ServerVariable(default="us-east-1")},
            ),
            Server(url="http://127.0.0.1:3000", description="Local runner (python -m observai_local serve)"),
        ],
        "security_schemes": {
            BEARER: HTTPBearer(
                bearerFormat="JWT",
                description="Supabase Auth access token of a person (JWKS or the legacy HS256 secret)",
            ),
            API_KEY: APIKey.model_validate(
                {"in": "header", "name": "x-api-key", "description": "A project API key (scoped; shown once)"}
            ),
        },
        "security": [{BEARER: []}, {API_KEY: []}],
    }


def function_document(app: Any) -> dict[str, Any]:
    return json.loads(app.get_openapi_json_schema(**_openapi_arguments()))


def merge_documents(documents: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge per-function documents (by logical id); conflicting operations or components raise."""
    merged: dict[str, Any] = {}
    path_owner: dict[tuple[str, str], str] = {}
    operation_ids: dict[str, str] = {}
    component_owner: dict[tuple[str, str], str] = {}
    for logical_id, doc in sorted(documents.items()):
        for key, value in doc.items():
            if key in ("paths", "components"):
                continue
            if key not in merged:
                merged[key] = value
            elif merged[key] != value:
                raise OpenApiConflict(f"{logical_id}: top-level {key!r} differs from the other functions'")
        paths = merged.setdefault("paths", {})
        for path, item in (doc.get("paths") or {}).items():
            target = paths.setdefault(path, {})
            for method, operation in item.items():
                if method in target:
                    owner = path_owner.get((path, method), "?")
                    raise OpenApiConflict(f"{method.upper()} {path} is served by both {owner} and {logical_id}")
                target[method] = operation
                path_owner[(path, method)] = logical_id
                op_id = operation.get("operationId") if isinstance(operation, dict) else None
                if op_id:
                    if op_id in operation_ids:
                        raise OpenApiConflict(
                            f"operationId {op_id!r} is used by both {operation_ids[op_id]} and {logical_id}"
                        )
                    operation_ids[op_id] = logical_id
        components = merged.setdefault("components", {})
        for section, entries in (doc.get("components") or {}).items():
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                if name in target and target[name] != definition:
                    owner = component_owner[(section, name)]
                    raise OpenApiConflict(
                        f"components/{section}/{name} differs between {owner} and {logical_id}: "
                        "two models share a name; rename one"
                    )
                target.setdefault(name, definition)
                component_owner.setdefault((section, name), logical_id)
    return merged


def _auth_dependencies(func: Any) -> set[str]:
    """Names of the observai.http.dependencies callables the route function depends on."""
    from aws_lambda_powertools.event_handler.depends import Depends

    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # an unresolvable annotation: leave the global security alone
        return {"unknown"}
    found: set[str] = set()
    for name, hint in hints.items():
        if name == "return" or typing.get_origin(hint) is not typing.Annotated:
            continue
        for meta in hint.__metadata__:
            if isinstance(meta, Depends):
                dependency = meta.dependency
                module = getattr(dependency, "__module__", "")
                found.add(dependency.__name__ if module == "observai.http.dependencies" else "unknown")
    return found


def operation_security(route: Any) -> list[dict[str, list[str]]] | None:
    """The security of one route, from its auth dependency; None keeps the global requirement."""
    deps = _auth_dependencies(route.func)
    if "unknown" in deps:
        return None
    if "current_user" in deps:
        return [{BEARER: []}]
    if "current_principal" in deps:
        return [{BEARER: []}, {API_KEY: []}]
    return []


def _error_envelope_schema() -> dict[str, Any]:
    return {
        "title": ERROR_ENVELOPE,
        "description": "Every error response: data is null, error says what went wrong.",
        "type": "object",
        "properties": {
            "data": {"type": "null"},
            "error": {"$ref": "#/components/schemas/ErrorBody"},
            "meta": {"type": "object"},
        },
        "required": ["data", "error"],
    }


def standard_errors(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses every route of this kind can answer, from what the operation takes.

    Credentials: 401 (missing, invalid), 403 (role, scope, user_token_required), 429 (the caller's rate limit).
    A path parameter: 404. A body: 400 (malformed JSON), 413, 415, 422. Any parameter or body: 422 (validation).
    A cursor: 400 (an invalid cursor). Everything but liveness reads the database: 503 (Retry-After).
    """
    statuses: set[int] = set()
    if operation.get("security", True):  # absent: the document's (credentials needed)
        statuses.update((401, 403, 429))
    parameters = operation.get("parameters") or []
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if operation.get("requestBody") is not None:
        statuses.update((400, 413, 415, 422))
    if parameters:
        statuses.add(422)
    if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
        statuses.add(400)
    if (method, path) not in NO_DATABASE:
        statuses.add(503)
    return sorted(statuses)


def document_errors(method: str, path: str, operation: dict[str, Any]) -> None:
    """Every error status the operation can answer, each as the envelope; no catch-all ``default``."""
    from observai.http.responses import error_response

    responses = operation.setdefault("responses", {})
    responses.pop("default", None)
    # Powertools documents 422 on every validating route, with its own model: ours is the envelope, and only where
    # there is something to validate.
    if "HTTPValidationError" in json.dumps(responses.get("422")):
        del responses["422"]
    for status in standard_errors(method, path, operation):
        responses.setdefault(str(status), error_response(status))
    for status, response in responses.items():
        if not status.startswith(("4", "5")):
            continue
        if "content" not in response:
            response = responses[status] = error_response(int(status), response.get("description"))
        if response == error_response(int(status)):  # the standard answer: one definition in components/responses
            responses[status] = {"$ref": f"#/components/responses/{error_response_name(int(status))}"}
    operation["responses"] = dict(sorted(responses.items()))


def error_response_name(status: int) -> str:
    return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")


def shared_error_responses(doc: dict[str, Any]) -> None:
    """components/responses: the standard answer of each error status an operation refers to."""
    from observai.http.responses import ERROR_DESCRIPTIONS, error_response

    used = {ref.rsplit("/", 1)[1] for ref in _refs(doc.get("paths", {})) if ref.startswith("#/components/responses/")}
    by_name = {error_response_name(status): status for status in ERROR_DESCRIPTIONS}
    doc.setdefault("components", {})["responses"] = {name: error_response(by_name[name]) for name in sorted(used)}


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _prune_unreferenced_schemas(doc: dict[str, Any]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    seen: set[str] = set()
    roots = {k: v for k, v in doc.items() if k != "components"}
    roots["responses"] = doc.get("components", {}).get("responses", {})
    pending = [r for r in _refs(roots) if r.startswith(prefix)]
    while pending:
        name = pending.pop()[len(prefix) :]
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending.extend(r for r in _refs(schemas[name]) if r.startswith(prefix))
    for name in list(schemas):
        if name not in seen:
            del schemas[name]


OTLP_MESSAGES = {
    "/v1/traces": "opentelemetry.proto.collector.trace.v1.ExportTraceService",
    "/v1/metrics": "opentelemetry.proto.collector.metrics.v1.ExportMetricsService",
    "/v1/logs": "opentelemetry.proto.collector.logs.v1.ExportLogsService",
}
_BINARY = {"type": "string", "format": "binary"}
# What the ingest routes (they read their own bodies) can answer: a bad body or encoding (400), credentials (401,
# 403), a reused Idempotency-Key (409), size (413), media type (415), a batch nothing of which can be read as events
# (422), the rate limit (429), the database (503).
INGEST_ERRORS = (400, 401, 403, 409, 413, 415, 422, 429, 503)


def otlp_operation(path: str, operation: dict[str, Any]) -> None:
    """OTLP/HTTP routes speak protobuf or OTLP/JSON both ways (the OTLP specification), not the envelope."""
    from observai.http.responses import error_response

    message = OTLP_MESSAGES[path]
    both = {"application/x-protobuf": {"schema": _BINARY}, "application/json": {"schema": {"type": "object"}}}
    operation["description"] = (
        f"OTLP/HTTP: a {message}Request, protobuf or OTLP/JSON, optionally gzip (Content-Encoding). The API key "
        "goes in x-api-key or Authorization: Bearer. The answer is in the request's encoding."
    )
    operation["security"] = [{API_KEY: []}, {BEARER: []}]
    operation["requestBody"] = {"required": True, "content": both}
    operation["responses"] = {
        "200": {"description": f"{message}Response; partial_success names rejected items", "content": both},
    }
    for status in INGEST_ERRORS:
        response = error_response(status)
        response["description"] = (
            f"google.rpc.Status (code, message), in the request's encoding. {response['description']}"
        )
        response["content"] = both
        operation["responses"][str(status)] = response


def native_ingest_body(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """POST /v1/ingest reads its own body (gzip, per-event validation): document the batch format here."""
    from observai.telemetry.native import batch_schema

    schema = batch_schema(ref_template="#/components/schemas/{model}")
    doc.setdefault("components", {}).setdefault("schemas", {}).update(schema.pop("$defs", {}))
    operation["requestBody"] = {
        "required": True,
        "description": "A JSON list of events (Content-Encoding: gzip welcome). Each event is validated on its"
        " own: invalid ones are rejected with their index and reason, the others stored.",
        "content": {"application/json": {"schema": schema}},
    }


def add_webhooks(doc: dict[str, Any]) -> None:
    """The OpenAPI 3.1 ``webhooks`` section: every event type we deliver, its payload schema and its headers."""
    from observai.webhooks.events import openapi_webhooks

    webhooks, event_schemas = openapi_webhooks()
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in event_schemas.items():
        if name in schemas and schemas[name] != schema:
            raise OpenApiConflict(f"components/schemas/{name}: an event schema and an API model share the name")
        schemas[name] = schema
    doc["webhooks"] = webhooks


def finish_document(doc: dict[str, Any], routes: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """Security per operation, the error envelope, tags; drop schemas nothing references."""
    from observai.http.responses import error_response

    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in schemas:
        raise OpenApiConflict("components/schemas/ErrorBody is missing: the envelope model changed?")
    schemas[ERROR_ENVELOPE] = _error_envelope_schema()
    tags: set[str] = set()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            tags.update(operation.get("tags") or [])
            if path in OTLP_MESSAGES:
                otlp_operation(path, operation)
                continue
            if (method, path) == ("post", "/v1/ingest"):
                native_ingest_body(doc, operation)
                operation.setdefault("responses", {}).update({str(s): error_response(s) for s in INGEST_ERRORS})
            route = routes.get((method.upper(), path))
            security = operation_security(route) if route is not None else None
            if security is not None:
                operation["security"] = security
            if (method, path) in HTML_OPERATIONS:
                operation.get("responses", {}).pop("422", None)  # Powertools' own; a link never answers it
                continue
            document_errors(method, path, operation)
    shared_error_responses(doc)
    add_webhooks(doc)
    for name in POWERTOOLS_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    _prune_unreferenced_schemas(doc)
    if tags:
        doc["tags"] = [{"name": tag} for tag in sorted(tags)]
    return doc


def build_document(template: Template | None = None) -> dict[str, Any]:
    """The merged OpenAPI document of every HTTP function in the template."""
    apps = load_apps(template)
    routes = {(r.method.upper(), r.openapi_path): r for app in apps.values() for r in registered_routes(app)}
    merged = merge_documents({logical_id: function_document(app) for logical_id, app in apps.items()})
    return finish_document(merged, routes)


def render(doc: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def staleness_diff(expected: str, actual: str | None, path: Path = OUTPUT_PATH, max_lines: int = 40) -> list[str]:
    """The first lines of a unified diff from the committed file to the generated one; [] when equal."""
    if actual == expected:
        return []
    label = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    diff = list(
        difflib.unified_diff(
            (actual or "").splitlines(),
            expected.splitlines(),
            f"{label} (committed)",
            f"{label} (generated)",
            n=2,
            lineterm="",
        )
    )
    if len(diff) > max_lines:
        diff = [*diff[:max_lines], f"... ({len(diff) - max_lines} more diff lines)"]
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local openapi", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {OUTPUT_PATH.relative_to(ROOT)}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed document is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT_PATH, help="default: docs/openapi.json")
    args = parser.parse_args(argv)

    try:
        text = render(build_document())
    except OpenApiConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.write:
        output.parent.mkdir(parents=True, exist_ok=True)
        changed = not output.exists() or output.read_text(encoding="utf-8") != text
        output.write_text(text, encoding="utf-8")
        print(f"{'wrote' if changed else 'unchanged'} {output}", file=sys.stderr)
        return 0
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        diff = staleness_diff(text, current, output)
        if not diff:
            print(f"{output} is up to date", file=sys.stderr)
            return 0
        what = "missing" if current is None else "stale"
        print(f"{output} is {what}; regenerate it: python -m observai_local openapi --write", file=sys.stderr)
        print("\n".join(diff), file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
