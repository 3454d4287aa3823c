"""Schemathesis over docs/openapi.json against the local runner: no 5xx, and every response as documented.

Each operation is fuzzed twice, once with a person's Supabase JWT and once with a project API key, with a
bounded number of examples (positive and negative data): the checks are no server error, a documented status
code, the documented content type and the response schema, and that invalid data is refused. Path parameters
are now random ids, now the ids of a real workspace (an organization with a project, members, an API key, logs,
spans, a metric, an export, an alert rule and an incident), so the 2xx answers are checked too, not only the 404s.

The runner's dependencies are real or local: the test Postgres, moto's SQS and S3 (exports), and a localhost
Supabase Auth (invitations). Bounds: FUZZ_EXAMPLES (default 12 per operation and credential) and FUZZ_SEED
(the default run is deterministic); see docs/api-fuzzing.md.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from observai_local.functions import local_overrides
from observai_local.openapi import OUTPUT_PATH
from observai_local.server import start_server

from tests.fakes.supabase_auth import FakeSupabaseAuth
from tests.helpers.export_aws import export_aws
from tests.helpers.gemini_standin import GeminiStandIn
from tests.helpers.http import client, ok_data
from tests.helpers.ingest import ago, iso, log, metric, span
from tests.helpers.users import User, make_user
from tests.helpers.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("FUZZ_SEED")
SERVICE_KEY = "fuzz-service-role-key"
METRIC = "fuzz.requests"

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": SEED is None,
            "with-security-parameters": False,  # the test sends the credentials itself
            "unique-inputs": True,
            # Unknown query parameters are ignored, not refused (the metrics routes take any match[<attribute>]).
            "allow-extra-parameters": False,
        },
        "phases": {"coverage": {"enabled": os.environ.get("FUZZ_COVERAGE") == "1"}, "stateful": {"enabled": False}},
        **({"seed": int(SEED)} if SEED else {}),
    }
)
schema = schemathesis.openapi.from_path(OUTPUT_PATH, config=CONFIG)
# OTLP/HTTP takes protobuf: the document says binary, sent as generated (random bytes for the decoder to refuse).
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
]


@dataclass
class Workspace:
    """Real ids for path parameters; the throwaway ones are for the operations that delete or revoke."""

    owner: User
    api_key: str
    ids: dict[str, list[str]] = field(default_factory=dict)
    throwaway: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def workspace(database_url: str) -> Iterator[tuple[str, Workspace]]:
    with (
        pytest.MonkeyPatch.context() as mp,
        FakeSupabaseAuth(service_key=SERVICE_KEY) as supabase,
        export_aws(mp),
        WebhookReceiver() as receiver,
        GeminiStandIn() as gemini,
    ):
        mp.setenv("SUPABASE_URL", supabase.url)
        # A Gemini key (the API at the local stand-in): the AI routes answer as configured (409 ai_disabled until
        # an opt-in; then the stand-in's schema-valid answers), never 503 ai_not_configured
        mp.setenv("GEMINI_API_KEY", "fuzz-gemini-key")
        mp.setenv("GEMINI_BASE_URL", gemini.base_url)
        mp.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")  # the workspace's webhook endpoints are at a localhost receiver
        # Contact points' tests reach the localhost receiver, PagerDuty's included (never the real Events API)
        mp.setenv("NOTIFY_ALLOW_LOOPBACK", "true")
        mp.setenv("PAGERDUTY_EVENTS_URL", receiver.url("/v2/enqueue"))
        mp.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
        mp.setenv("SLACK_SIGNING_SECRET", "fuzz-slack-signing-secret")  # configured: unsigned requests are 401s
        overrides = local_overrides("test", database_url)
        overrides["RATE_LIMIT_PER_SECOND"] = "10000"
        overrides["RATE_LIMIT_BURST"] = "100000"
        server, base_url = start_server("127.0.0.1", 0, overrides=overrides, quiet=True)
        try:
            yield base_url, _arrange(base_url, database_url, receiver.url("/hook"))
        finally:
            server.shutdown()
            server.server_close()


def _arrange(base_url: str, database_url: str, hook_url: str) -> Workspace:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        owner = make_user(db, email=f"fuzz-owner-{uuid.uuid4().hex[:8]}@example.test")
        member = make_user(db)
        spare = make_user(db)
    with client(base_url, user=owner) as http:
        org = ok_data(http.post("/v1/orgs", json={"name": f"Fuzz {uuid.uuid4().hex[:6]}"}), 201)
        doomed_org = ok_data(http.post("/v1/orgs", json={"name": f"Fuzz doomed {uuid.uuid4().hex[:6]}"}), 201)
        project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "fuzz"}), 201)
        doomed_project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "doomed"}), 201)
        for user in (member, spare):
            ok_data(http.post(f"/v1/orgs/{org['id']}/members", json={"user_id": str(user.id), "role": "member"}), 201)
        keys = f"/v1/projects/{project['id']}/api-keys"
        key = ok_data(http.post(keys, json={"name": "fuzz", "scopes": ["ingest", "read", "admin"]}), 201)
        doomed_key = ok_data(http.post(keys, json={"name": "doomed", "scopes": ["read"]}), 201)
    trace_id = uuid.uuid4().hex
    with client(base_url, api_key=key["key"]) as http:
        events = [
            log("fuzz line", service="api"),
            span("GET /fuzz", trace_id=trace_id, service="api"),
            metric(METRIC, 3.0, attributes={"route": "/"}),
        ]
        ok_data(http.post("/v1/ingest", json=events), 202)
        logs = ok_data(http.get(f"/v1/projects/{project['id']}/logs"))
        window = {"from": iso(ago(3600)), "to": iso(ago(-60))}
        export = ok_data(http.post(f"/v1/projects/{project['id']}/exports", json={"signal": "logs", **window}), 202)
    with client(base_url, user=owner) as http:
        rules = f"/v1/projects/{project['id']}/alert-rules"
        condition = {"kind": "metric", "metric": METRIC, "op": ">", "threshold": 1}
        rule = ok_data(http.post(rules, json={"name": "fuzz", "condition": condition}), 201)
        doomed_rule = ok_data(http.post(rules, json={"name": "doomed", "condition": condition}), 201)
        webhooks = f"/v1/projects/{project['id']}/webhooks"
        endpoint = ok_data(http.post(webhooks, json={"url": hook_url}), 201)
        doomed_endpoint = ok_data(http.post(webhooks, json={"url": hook_url}), 201)
        schedules = f"/v1/orgs/{org['id']}/schedules"
        layer = {
            "name": "fuzz",
            "users": [str(member.id), str(owner.id)],
            "rotation": {"unit": "days", "length": 1},
            "start": "2026-01-01T09:00:00Z",
        }
        schedule_body = {"name": "fuzz", "time_zone": "Europe/Berlin", "layers": [layer]}
        schedule = ok_data(http.post(schedules, json=schedule_body), 201)
        doomed_schedule = ok_data(http.post(schedules, json=schedule_body), 201)
        override_body = {"user_id": str(owner.id), "start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z"}
        overrides = f"{schedules}/{schedule['id']}/overrides"
        override = ok_data(http.post(overrides, json=override_body), 201)
        doomed_override = ok_data(http.post(overrides, json=override_body), 201)
        policies = f"/v1/projects/{project['id']}/escalation-policies"
        policy_body = {
            "name": "fuzz",
            "steps": [{"wait_minutes": 5, "targets": [{"type": "user", "id": str(member.id)}]}],
        }
        policy = ok_data(http.post(policies, json=policy_body), 201)
        doomed_policy = ok_data(http.post(policies, json={**policy_body, "name": "doomed"}), 201)
        contact_points = f"/v1/projects/{project['id']}/contact-points"
        slack = {"kind": "slack", "settings": {"url": hook_url}}
        contact_point = ok_data(http.post(contact_points, json={"name": "fuzz-slack", **slack}), 201)
        doomed_contact_point = ok_data(http.post(contact_points, json={"name": "doomed-slack", **slack}), 201)
        detectors = f"/v1/projects/{project['id']}/anomaly-detectors"
        detector_body = {"name": "fuzz", "query": {"name": METRIC, "group_by": ["route"]}}
        detector = ok_data(http.post(detectors, json=detector_body), 201)
        doomed_detector = ok_data(http.post(detectors, json={**detector_body, "name": "doomed"}), 201)
    anomaly_id, group_id = _anomaly(database_url, org["id"], project["id"], detector["id"])
    ws = Workspace(owner=owner, api_key=key["key"])
    ws.ids = {
        "org_id": [org["id"]],
        "project_id": [project["id"]],
        "user_id": [str(member.id)],
        "key_id": [doomed_key["id"]],
        "log_id": [str(item["id"]) for item in logs[:1]],
        "trace_id": [trace_id],
        "export_id": [export["id"]],
        "name": [METRIC],
        "rule_id": [rule["id"]],
        "version": ["1"],
        "incident_id": [_incident(database_url, org["id"], project["id"])],
        "endpoint_id": [endpoint["id"]],
        "schedule_id": [schedule["id"]],
        "override_id": [override["id"]],
        "policy_id": [policy["id"]],
        "contact_point_id": [contact_point["id"]],
        "detector_id": [detector["id"]],
        "anomaly_id": [anomaly_id],
        "group_id": [group_id],
    }
    ws.throwaway = {
        ("DELETE", "/v1/orgs/{org_id}"): {"org_id": doomed_org["id"]},
        ("DELETE", "/v1/projects/{project_id}"): {"project_id": doomed_project["id"]},
        ("DELETE", "/v1/orgs/{org_id}/members/{user_id}"): {"user_id": str(spare.id)},
        ("DELETE", "/v1/projects/{project_id}/alert-rules/{rule_id}"): {"rule_id": doomed_rule["id"]},
        ("DELETE", "/v1/projects/{project_id}/webhooks/{endpoint_id}"): {"endpoint_id": doomed_endpoint["id"]},
        ("DELETE", "/v1/orgs/{org_id}/schedules/{schedule_id}"): {"schedule_id": doomed_schedule["id"]},
        ("DELETE", "/v1/orgs/{org_id}/schedules/{schedule_id}/overrides/{override_id}"): {
            "override_id": doomed_override["id"]
        },
        ("DELETE", "/v1/projects/{project_id}/escalation-policies/{policy_id}"): {"policy_id": doomed_policy["id"]},
        ("DELETE", "/v1/projects/{project_id}/contact-points/{contact_point_id}"): {
            "contact_point_id": doomed_contact_point["id"]
        },
        ("DELETE", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}"): {"detector_id": doomed_detector["id"]},
    }
    return ws


def _incident(database_url: str, org_id: str, project_id: str) -> str:
    """An incident of the project, opened by a notification group's flush as the dispatcher does it."""
    from datetime import UTC, datetime

    import psycopg
    from psycopg.rows import dict_row

    from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush

    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        rule = arrange_rule(db, uuid.UUID(org_id), uuid.UUID(project_id))
        group_id = arrange_group(db, rule.org_id, rule.project_id)
        incident = flush(group_id, firing=[arrange_alert(db, rule, at=now)], now=now)
    return str(incident["id"])


def _anomaly(database_url: str, org_id: str, project_id: str, detector_id: str) -> tuple[str, str]:
    """An anomaly of the detector's series (as detect-anomalies leaves it) and its correlated group."""
    from datetime import UTC, datetime

    import psycopg
    from observai.anomalies.correlation import correlate
    from observai.db.connection import transaction
    from psycopg.rows import dict_row

    from tests.helpers.anomaly_rows import add_event, add_series
    from tests.helpers.ingest import IngestProject

    project = IngestProject(uuid.UUID(org_id), uuid.UUID(project_id), uuid.UUID(int=0), "")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        series = add_series(db, project, uuid.UUID(detector_id), {"route": "/"})
        anomaly = add_event(db, project, uuid.UUID(detector_id), series, {"route": "/"}, datetime.now(UTC))
    with transaction() as cur:
        correlate(cur, project.project_id, datetime.now(UTC))
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        row = db.execute("select group_id from public.anomaly_events where id = %s", (anomaly,)).fetchone()
    assert row is not None
    return str(anomaly), str(row["group_id"])


def use_workspace_ids(case: schemathesis.Case, ws: Workspace) -> None:
    """For half of the generated path parameters (a stable choice), the ids of the real workspace, or a throwaway
    one where the operation destroys it. Reading ``case.meta`` then revalidates the case: a negative case whose
    invalid part was replaced is relabelled positive, so negative_data_rejection judges what is really sent."""
    generated = case.path_parameters or {}
    if not generated or zlib.crc32(repr(sorted(generated.items())).encode()) % 2:
        return
    real = {name: ws.ids[name][0] if ws.ids.get(name) else value for name, value in generated.items()}
    real.update(ws.throwaway.get((case.method.upper(), case.path), {}))
    case.path_parameters = real
    _ = case.meta


@pytest.fixture(scope="module", params=["jwt", "api_key"])
def credentials(
    request: pytest.FixtureRequest, workspace: tuple[str, Workspace]
) -> tuple[str, Workspace, dict[str, str]]:
    """The runner's URL, the workspace, and the headers of one credential: the owner's JWT or the API key."""
    base_url, ws = workspace
    if request.param == "jwt":
        return base_url, ws, {"Authorization": f"Bearer {ws.owner.jwt}"}
    return base_url, ws, {"x-api-key": ws.api_key}


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, credentials: tuple[str, Workspace, dict[str, str]]
) -> None:
    base_url, ws, headers = credentials
    use_workspace_ids(case, ws)
    excluded = []
    if (case.method.upper(), case.path) == ("POST", "/v1/ingest"):
        # By design, not a finding: a batch's events are validated one by one, the invalid ones are rejected with
        # their index and reason and the others stored (202), so an invalid event does not make the request invalid.
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, excluded_checks=excluded, timeout=30)
