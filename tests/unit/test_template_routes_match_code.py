"""The HttpApi routes of template.yaml are exactly the routes each function's resolver registers.

A route added in code but not in the template would never reach the function in AWS (API Gateway
answers 404); a route in the template but not in code reaches a resolver that answers 404 itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from observai_local.openapi import load_apps, registered_routes
from observai_local.template import ROOT, load_template

_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


def _template_path(code_path: str) -> str:
    """Powertools writes /v1/orgs/<org_id>; API Gateway (and the template) /v1/orgs/{org_id}."""
    return _PARAM.sub(r"{\1}", code_path)


TEMPLATE = load_template()
APPS = load_apps(TEMPLATE)


def test_conversion() -> None:
    assert _template_path("/v1/orgs/<org_id>/members/<user_id>") == "/v1/orgs/{org_id}/members/{user_id}"


@pytest.mark.parametrize("logical_id", sorted(APPS))
def test_template_routes_equal_code_routes(logical_id: str) -> None:
    spec = TEMPLATE.function(logical_id)
    in_template = {(route.method, route.path) for route in spec.routes}
    in_code = {(route.method.upper(), _template_path(route.path)) for route in registered_routes(APPS[logical_id])}
    assert in_code - in_template == set(), (
        f"{logical_id}: routes in {spec.handler_file.relative_to(ROOT)} missing from template.yaml "
        f"(add HttpApi events): {sorted(in_code - in_template)}"
    )
    assert in_template - in_code == set(), (
        f"{logical_id}: HttpApi routes in template.yaml that the code does not serve: {sorted(in_template - in_code)}"
    )


def test_no_route_is_served_by_two_functions() -> None:
    owners: dict[tuple[str, str], str] = {}
    for route in TEMPLATE.routes:
        key = (route.method, route.path)
        assert key not in owners, f"{key} is routed to both {owners[key]} and {route.function}"
        owners[key] = route.function


def test_every_resolver_in_functions_is_deployed() -> None:
    """A function folder whose handler defines a resolver must be a template function with routes."""
    handler_files = {spec.handler_file.resolve() for spec in TEMPLATE.functions.values()}
    with_routes = {TEMPLATE.functions[logical_id].handler_file.resolve() for logical_id in APPS}
    for app_file in sorted(Path(ROOT / "functions").glob("*/app.py")):
        source = app_file.read_text(encoding="utf-8")
        if "create_resolver()" not in source and "Resolver(" not in source:
            continue
        assert app_file.resolve() in handler_files, f"{app_file.relative_to(ROOT)} is not a function in template.yaml"
        assert app_file.resolve() in with_routes, f"{app_file.relative_to(ROOT)} has a resolver but no HttpApi route"
