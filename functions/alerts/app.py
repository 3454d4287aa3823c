"""Alert rules of a project (create, preview, list, read, replace, patch, delete), their versions and history, and
the project's current alerts.

Rules are written by people with the member role and up, or an API key of the project with the ``admin`` scope
(rules kept as code); read by viewers and up, or a ``read`` key of the project. The evaluation itself is
EvaluateAlertsFunction's. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from observai.alerts import preview, rules
from observai.alerts.preview import RulePreview
from observai.alerts.rule_models import (
    AlertInstance,
    AlertState,
    AlertTransition,
    Rule,
    RuleDeleted,
    RuleIn,
    RulePatch,
    RuleVersion,
)
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()

Severity = Literal["critical", "error", "warning", "info"]
KindFilter = Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="metric, log, absence...")]
EnabledFilter = Annotated[bool | None, Query(description="Only enabled (true) or disabled (false) rules")]
SeverityFilter = Annotated[Severity | None, Query()]
NameFilter = Annotated[
    str | None, Query(alias="name", min_length=1, max_length=200, description="Name contains (case-insensitive)")
]
StateFilter = Annotated[
    list[AlertState] | None,
    Query(
        max_length=4,
        description="inactive, pending, firing, resolved: repeated (state=a&state=b) or a comma list"
        " (default: pending,firing)",
    ),
]
RuleIdFilter = Annotated[UUID | None, Query(description="Only this rule's alerts")]
VersionNumber = Annotated[int, Path(ge=1, lt=2**31, description="The version number (1 is the rule as created)")]
MATCH_HELP = "Filter by label equality with any number of `match[<label>]=<value>` query parameters."
NAME_CONFLICT = "Another rule of the project has this name (conflict, details.loc names the field)"


@app.post(
    "/v1/projects/<project_id>/alert-rules",
    status_code=201,
    tags=["alerting"],
    responses=route_responses(201, e409=f"{NAME_CONFLICT}; or the project has 500 rules already (rule_limit_reached)"),
)
def create_rule(caller: CurrentPrincipal, project_id: UUID, body: Annotated[RuleIn, Body()]) -> Envelope[Rule]:
    """Create an alert rule (members and up): a condition of kind metric, log or absence, with its for,
    keep_firing_for, interval, severity, labels and annotation templates. It is version 1, due for evaluation
    at once. See docs/alerting-rules.md."""
    return ok(rules.create_rule(caller, project_id, body))


@app.post(
    "/v1/projects/<project_id>/alert-rules/preview",
    tags=["alerting"],
    responses=route_responses(200),
)
def preview_rule(caller: CurrentPrincipal, project_id: UUID, body: Annotated[RuleIn, Body()]) -> Envelope[RulePreview]:
    """Evaluate a rule now without saving it (anyone who may read the project): the alert instances it would
    produce (full labels, fingerprint, value, whether the condition holds, the state a first evaluation would
    give) and their rendered annotations. A query the database refuses is shown in error, not raised."""
    return ok(preview.preview_rule(caller, project_id, body, datetime.now(UTC)))


@app.get("/v1/projects/<project_id>/alert-rules", tags=["alerting"])
def list_rules(
    caller: CurrentPrincipal,
    project_id: UUID,
    kind: KindFilter = None,
    enabled: EnabledFilter = None,
    severity: SeverityFilter = None,
    name_contains: NameFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[Rule]]:
    """The project's alert rules by name, with the outcome of their last evaluation."""
    filters = rules.RuleFilters(kind=kind, enabled=enabled, severity=severity, name_contains=name_contains)
    items, next_cursor = rules.list_rules(caller, project_id, filters, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/alert-rules/<rule_id>", tags=["alerting"])
def get_rule(caller: CurrentPrincipal, project_id: UUID, rule_id: UUID) -> Envelope[Rule]:
    return ok(rules.get_rule(caller, project_id, rule_id))


@app.put(
    "/v1/projects/<project_id>/alert-rules/<rule_id>",
    tags=["alerting"],
    responses=route_responses(200, e409=NAME_CONFLICT),
)
def replace_rule(
    caller: CurrentPrincipal, project_id: UUID, rule_id: UUID, body: Annotated[RuleIn, Body()]
) -> Envelope[Rule]:
    """Replace the whole rule (fields left out take their defaults). A changed definition is a new version;
    disabling it resolves its firing alerts."""
    return ok(rules.replace_rule(caller, project_id, rule_id, body))


@app.patch(
    "/v1/projects/<project_id>/alert-rules/<rule_id>",
    tags=["alerting"],
    responses=route_responses(200, e409=NAME_CONFLICT),
)
def patch_rule(
    caller: CurrentPrincipal, project_id: UUID, rule_id: UUID, body: Annotated[RulePatch, Body()]
) -> Envelope[Rule]:
    """Change some fields (those left out or null keep their value; condition, labels and annotations are
    replaced as wholes). `{"enabled": false}` disables the rule and resolves its firing alerts."""
    return ok(rules.patch_rule(caller, project_id, rule_id, body))


@app.delete("/v1/projects/<project_id>/alert-rules/<rule_id>", tags=["alerting"])
def delete_rule(caller: CurrentPrincipal, project_id: UUID, rule_id: UUID) -> Envelope[RuleDeleted]:
    """Delete the rule: its firing alerts resolve (and are notified as resolved); its versions and history stay
    readable."""
    return ok(rules.delete_rule(caller, project_id, rule_id))


@app.get("/v1/projects/<project_id>/alert-rules/<rule_id>/versions", tags=["alerting"])
def list_versions(
    caller: CurrentPrincipal, project_id: UUID, rule_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[RuleVersion]]:
    """Every saved version of the rule, newest first (also after the rule was deleted)."""
    items, next_cursor = rules.list_versions(caller, project_id, rule_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/alert-rules/<rule_id>/versions/<version>", tags=["alerting"])
def get_version(
    caller: CurrentPrincipal, project_id: UUID, rule_id: UUID, version: VersionNumber
) -> Envelope[RuleVersion]:
    """The rule as it was at one version (also after the rule was deleted)."""
    return ok(rules.get_version(caller, project_id, rule_id, version))


@app.get("/v1/projects/<project_id>/alert-rules/<rule_id>/history", tags=["alerting"])
def rule_history(
    caller: CurrentPrincipal, project_id: UUID, rule_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[AlertTransition]]:
    """Every state change of the rule's alerts, newest first, with the value that caused it."""
    items, next_cursor = rules.rule_history(caller, project_id, rule_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(
    "/v1/projects/<project_id>/alerts",
    tags=["alerting"],
    description=f"The project's alerts, most recently active first. {MATCH_HELP}",
    responses=route_responses(200, e400="An invalid match[<label>] parameter"),
)
def list_alerts(
    caller: CurrentPrincipal,
    project_id: UUID,
    state: StateFilter = None,
    rule_id: RuleIdFilter = None,
    severity: SeverityFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[AlertInstance]]:
    filters = rules.AlertFilters(
        states=tuple(sorted(set(state))) if state else rules.DEFAULT_ALERT_STATES,
        rule_id=rule_id,
        severity=severity,
        labels=rules.label_matchers(app.current_event.query_string_parameters),
    )
    items, next_cursor = rules.list_alerts(caller, project_id, filters, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


lambda_handler = lambda_handler_for(app)
