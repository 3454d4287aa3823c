"""Route matching as API Gateway HTTP APIs do it: most specific route first."""

from __future__ import annotations

import pytest
from observai_local.routing import Router
from observai_local.template import Route, load_template


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_template().routes)


@pytest.mark.parametrize(
    ("method", "path", "function", "route_path", "params"),
    [
        ("GET", "/v1/health", "HealthFunction", "/v1/health", {}),
        ("GET", "/v1/health/ready", "HealthFunction", "/v1/health/ready", {}),
        ("GET", "/v1/whoami", "OrgsFunction", "/v1/whoami", {}),
        ("PATCH", "/v1/orgs/o1", "OrgsFunction", "/v1/orgs/{org_id}", {"org_id": "o1"}),
        (
            "DELETE",
            "/v1/orgs/o1/members/u2",
            "OrgsFunction",
            "/v1/orgs/{org_id}/members/{user_id}",
            {"org_id": "o1", "user_id": "u2"},
        ),
        ("GET", "/v1/projects/p1", "OrgsFunction", "/v1/projects/{project_id}", {"project_id": "p1"}),
        (
            "GET",
            "/v1/projects/p1/api-keys",
            "ApiKeysFunction",
            "/v1/projects/{project_id}/api-keys",
            {"project_id": "p1"},
        ),
        (
            "POST",
            "/v1/projects/p1/api-keys/k9/rotate",
            "ApiKeysFunction",
            "/v1/projects/{project_id}/api-keys/{key_id}/rotate",
            {"project_id": "p1", "key_id": "k9"},
        ),
        ("get", "/v1/orgs/a%20b", "OrgsFunction", "/v1/orgs/{org_id}", {"org_id": "a b"}),
    ],
)
def test_template_routes(router: Router, method, path, function, route_path, params) -> None:
    match = router.match(method, path)
    assert match is not None
    assert (match.route.function, match.route.path, match.path_parameters) == (function, route_path, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("PUT", "/v1/orgs"),  # the path exists, not for this method
        ("GET", "/v1/orgs/o1/members/u2/extra"),
        ("POST", "/v1/projects/p1/api-keys/k9"),
        ("GET", "/v1/health/"),
        ("GET", "/"),
    ],
)
def test_no_match(router: Router, method, path) -> None:
    assert router.match(method, path) is None


def test_specificity() -> None:
    router = Router(
        [
            Route("ANY", "/{proxy+}", "Greedy"),
            Route("GET", "/v1/{thing}", "Param"),
            Route("GET", "/v1/orgs", "Literal"),
            Route("ANY", "/v1/orgs", "AnyLiteral"),
            Route("GET", "/v1/orgs/{org_id}/{rest+}", "OrgGreedy"),
            Route("GET", "/v1/{a}/{b}/c", "TwoParams"),
        ]
    )
    assert router.match("GET", "/v1/orgs").route.function == "Literal"
    assert router.match("POST", "/v1/orgs").route.function == "AnyLiteral"
    assert router.match("GET", "/v1/projects").route.function == "Param"
    assert router.match("POST", "/v1/projects").route.function == "Greedy"
    m = router.match("GET", "/v1/orgs/o1/x/y")
    assert (m.route.function, m.path_parameters) == ("OrgGreedy", {"org_id": "o1", "rest": "x/y"})
    assert router.match("GET", "/v1/orgs/b/c").route.function == "OrgGreedy"  # literal 'orgs' beats {a}
    assert router.match("GET", "/v1/teams/b/c").route.function == "TwoParams"
    assert router.match("DELETE", "/anything/at/all").path_parameters == {"proxy": "anything/at/all"}


def test_default_route_catches_the_rest() -> None:
    router = Router([Route("GET", "/v1/x", "X"), Route("ANY", "$default", "Fallback")])
    assert router.match("GET", "/v1/x").route.function == "X"
    fallback = router.match("POST", "/somewhere")
    assert fallback.route.function == "Fallback" and fallback.path_parameters == {}
