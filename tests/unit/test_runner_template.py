"""The local runner reads template.yaml: every function, route and schedule, with its environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from observai_local.template import TEMPLATE_PATH, load_template, load_yaml

# The route contract: (method, path) per function.
EXPECTED_ROUTES = {
    "HealthFunction": {("GET", "/v1/health"), ("GET", "/v1/health/ready")},
    "OrgsFunction": {
        ("POST", "/v1/orgs"),
        ("GET", "/v1/orgs"),
        ("GET", "/v1/orgs/{org_id}"),
        ("PATCH", "/v1/orgs/{org_id}"),
        ("DELETE", "/v1/orgs/{org_id}"),
        ("POST", "/v1/orgs/{org_id}/projects"),
        ("GET", "/v1/orgs/{org_id}/projects"),
        ("GET", "/v1/projects/{project_id}"),
        ("PATCH", "/v1/projects/{project_id}"),
        ("DELETE", "/v1/projects/{project_id}"),
        ("GET", "/v1/orgs/{org_id}/members"),
        ("POST", "/v1/orgs/{org_id}/members"),
        ("PATCH", "/v1/orgs/{org_id}/members/{user_id}"),
        ("DELETE", "/v1/orgs/{org_id}/members/{user_id}"),
        ("POST", "/v1/orgs/{org_id}/invitations"),
        ("GET", "/v1/orgs/{org_id}/audit-log"),
        ("GET", "/v1/orgs/{org_id}/usage"),
        ("GET", "/v1/orgs/{org_id}/ai"),
        ("PUT", "/v1/orgs/{org_id}/ai"),
        ("GET", "/v1/whoami"),
    },
    "ApiKeysFunction": {
        ("POST", "/v1/projects/{project_id}/api-keys"),
        ("GET", "/v1/projects/{project_id}/api-keys"),
        ("DELETE", "/v1/projects/{project_id}/api-keys/{key_id}"),
        ("POST", "/v1/projects/{project_id}/api-keys/{key_id}/rotate"),
    },
    "MetricsFunction": {
        ("GET", "/v1/projects/{project_id}/metrics"),
        ("PATCH", "/v1/projects/{project_id}/metrics/{name}/definition"),
        ("DELETE", "/v1/projects/{project_id}/metrics/{name}/definition"),
        ("GET", "/v1/projects/{project_id}/metrics/{name}/series"),
        ("GET", "/v1/projects/{project_id}/metrics/{name}/cardinality"),
        ("POST", "/v1/projects/{project_id}/metrics/query"),
    },
    "TracesFunction": {
        ("GET", "/v1/projects/{project_id}/traces/{trace_id}"),
        ("GET", "/v1/projects/{project_id}/traces"),
        ("GET", "/v1/projects/{project_id}/services"),
    },
    "LogsFunction": {
        ("GET", "/v1/projects/{project_id}/logs"),
        ("GET", "/v1/projects/{project_id}/logs/histogram"),
        ("GET", "/v1/projects/{project_id}/logs/{log_id}/context"),
    },
    "IngestFunction": {
        ("POST", "/v1/ingest"),
        ("POST", "/v1/metrics"),
        ("POST", "/v1/logs"),
        ("POST", "/v1/traces"),
    },
    "IngestDrainFunction": set(),  # an SQS consumer
    "ExportsFunction": {
        ("POST", "/v1/projects/{project_id}/exports"),
        ("GET", "/v1/projects/{project_id}/exports"),
        ("GET", "/v1/projects/{project_id}/exports/{export_id}"),
    },
    "ExportWorkerFunction": set(),  # an SQS consumer
    "AlertsFunction": {
        ("POST", "/v1/projects/{project_id}/alert-rules"),
        ("POST", "/v1/projects/{project_id}/alert-rules/preview"),
        ("GET", "/v1/projects/{project_id}/alert-rules"),
        ("GET", "/v1/projects/{project_id}/alert-rules/{rule_id}"),
        ("PUT", "/v1/projects/{project_id}/alert-rules/{rule_id}"),
        ("PATCH", "/v1/projects/{project_id}/alert-rules/{rule_id}"),
        ("DELETE", "/v1/projects/{project_id}/alert-rules/{rule_id}"),
        ("GET", "/v1/projects/{project_id}/alert-rules/{rule_id}/versions"),
        ("GET", "/v1/projects/{project_id}/alert-rules/{rule_id}/versions/{version}"),
        ("GET", "/v1/projects/{project_id}/alert-rules/{rule_id}/history"),
        ("GET", "/v1/projects/{project_id}/alerts"),
    },
    "AlertRoutingFunction": {
        ("GET", "/v1/projects/{project_id}/notification-policy"),
        ("PUT", "/v1/projects/{project_id}/notification-policy"),
        ("POST", "/v1/projects/{project_id}/silences"),
        ("GET", "/v1/projects/{project_id}/silences"),
        ("GET", "/v1/projects/{project_id}/silences/{silence_id}"),
        ("PATCH", "/v1/projects/{project_id}/silences/{silence_id}"),
        ("DELETE", "/v1/projects/{project_id}/silences/{silence_id}"),
        ("GET", "/v1/projects/{project_id}/notification-log"),
        ("GET", "/v1/projects/{project_id}/alert-groups"),
    },
    "DispatchNotificationsFunction": set(),  # an SQS consumer (group timers) and a minute schedule
    "DeliverWebhooksFunction": set(),  # an SQS consumer (delivery wake-ups) and a minute sweep
    "WebhookDeliveriesFunction": {
        ("GET", "/v1/projects/{project_id}/webhooks/{endpoint_id}/deliveries"),
        ("POST", "/v1/projects/{project_id}/webhooks/deliveries/{message_id}/retry"),
        ("POST", "/v1/projects/{project_id}/webhooks/{endpoint_id}/recover"),
    },
    "HousekeepingFunction": set(),
    "DetectAnomaliesFunction": set(),
    "PartitionUpkeepFunction": set(),
    "AggregateMetricsFunction": set(),
    "CleanupRetentionFunction": set(),
    "PurgeDeletedFunction": set(),
    "IncidentsFunction": {
        ("GET", "/v1/projects/{project_id}/incidents"),
        ("GET", "/v1/projects/{project_id}/incidents/{incident_id}"),
        ("PATCH", "/v1/projects/{project_id}/incidents/{incident_id}"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/acknowledge"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/unacknowledge"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/snooze"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/resolve"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/assign"),
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/comments"),
        ("GET", "/v1/projects/{project_id}/incidents/{incident_id}/comments"),
        ("GET", "/v1/projects/{project_id}/incidents/{incident_id}/timeline"),
        ("GET", "/v1/projects/{project_id}/incidents/{incident_id}/notifications"),
    },
    "DeliverNotificationsFunction": set(),
    "IncidentTimersFunction": set(),
    "EvaluateAlertsFunction": set(),
    "WebhooksFunction": {
        ("POST", "/v1/projects/{project_id}/webhooks"),
        ("GET", "/v1/projects/{project_id}/webhooks"),
        ("GET", "/v1/projects/{project_id}/webhooks/{endpoint_id}"),
        ("PATCH", "/v1/projects/{project_id}/webhooks/{endpoint_id}"),
        ("DELETE", "/v1/projects/{project_id}/webhooks/{endpoint_id}"),
        ("POST", "/v1/projects/{project_id}/webhooks/{endpoint_id}/rotate-secret"),
        ("POST", "/v1/projects/{project_id}/webhooks/{endpoint_id}/test"),
    },
    "AnomaliesFunction": {
        ("POST", "/v1/projects/{project_id}/anomaly-detectors/backtest"),
        ("POST", "/v1/projects/{project_id}/anomaly-detectors"),
        ("GET", "/v1/projects/{project_id}/anomaly-detectors"),
        ("GET", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}"),
        ("PATCH", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}"),
        ("DELETE", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}"),
        ("GET", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}/bands"),
        ("GET", "/v1/projects/{project_id}/anomaly-detectors/{detector_id}/series"),
        ("GET", "/v1/projects/{project_id}/anomalies"),
        ("GET", "/v1/projects/{project_id}/anomalies/{anomaly_id}"),
        ("GET", "/v1/projects/{project_id}/anomaly-groups"),
        ("GET", "/v1/projects/{project_id}/anomaly-groups/{group_id}"),
    },
    "IncidentActionsFunction": {
        ("GET", "/v1/actions/incidents/{token}"),
        ("POST", "/v1/actions/incidents/{token}"),
        ("POST", "/v1/integrations/slack/actions"),
    },
    "EscalationPoliciesFunction": {
        ("POST", "/v1/projects/{project_id}/escalation-policies"),
        ("GET", "/v1/projects/{project_id}/escalation-policies"),
        ("GET", "/v1/projects/{project_id}/escalation-policies/{policy_id}"),
        ("PATCH", "/v1/projects/{project_id}/escalation-policies/{policy_id}"),
        ("DELETE", "/v1/projects/{project_id}/escalation-policies/{policy_id}"),
    },
    "EscalateFunction": set(),  # an SQS consumer (escalation timers) and a minute sweep
    "IncidentSummariesFunction": {
        ("POST", "/v1/projects/{project_id}/incidents/{incident_id}/summary"),
        ("GET", "/v1/projects/{project_id}/incidents/{incident_id}/summary"),
    },
    "AiWorkerFunction": set(),  # an SQS consumer (AI task wake-ups) and a minute sweep
    "SchedulesFunction": {
        ("POST", "/v1/orgs/{org_id}/schedules"),
        ("GET", "/v1/orgs/{org_id}/schedules"),
        ("GET", "/v1/orgs/{org_id}/schedules/{schedule_id}"),
        ("PATCH", "/v1/orgs/{org_id}/schedules/{schedule_id}"),
        ("DELETE", "/v1/orgs/{org_id}/schedules/{schedule_id}"),
        ("POST", "/v1/orgs/{org_id}/schedules/{schedule_id}/overrides"),
        ("GET", "/v1/orgs/{org_id}/schedules/{schedule_id}/overrides"),
        ("DELETE", "/v1/orgs/{org_id}/schedules/{schedule_id}/overrides/{override_id}"),
        ("GET", "/v1/orgs/{org_id}/schedules/{schedule_id}/oncall"),
        ("GET", "/v1/orgs/{org_id}/schedules/{schedule_id}/shifts"),
        ("GET", "/v1/me/oncall"),
    },
    "ContactPointsFunction": {
        ("POST", "/v1/projects/{project_id}/contact-points"),
        ("GET", "/v1/projects/{project_id}/contact-points"),
        ("GET", "/v1/projects/{project_id}/contact-points/{contact_point_id}"),
        ("PATCH", "/v1/projects/{project_id}/contact-points/{contact_point_id}"),
        ("DELETE", "/v1/projects/{project_id}/contact-points/{contact_point_id}"),
        ("POST", "/v1/projects/{project_id}/contact-points/{contact_point_id}/test"),
        ("GET", "/v1/orgs/{org_id}/members/{user_id}/notification-settings"),
        ("PUT", "/v1/orgs/{org_id}/members/{user_id}/notification-settings"),
    },
    "SimilarIncidentsFunction": {("GET", "/v1/projects/{project_id}/incidents/{incident_id}/similar")},
    "AskFunction": {
        ("POST", "/v1/projects/{project_id}/logs/ask"),
        ("POST", "/v1/projects/{project_id}/metrics/ask"),
    },
}
# Functions whose memory differs from Globals (512 MB): ingestion decodes and copies large batches; the export
# worker compresses; the alert evaluation judges and writes thousands of rules a minute (more memory, more CPU).
MEMORY = {
    "IngestFunction": 1024,
    "IngestDrainFunction": 1024,
    "ExportWorkerFunction": 1024,
    "EvaluateAlertsFunction": 1024,
    "AnomaliesFunction": 1024,  # the backtest folds up to 50,000 points: a full vCPU
    "AggregateMetricsFunction": 1769,  # numpy beside the database, two stages side by side: a full vCPU
}


@pytest.fixture(scope="module")
def template():
    return load_template()


def test_every_function_is_found_with_its_code_and_settings(template) -> None:
    assert set(template.functions) == set(EXPECTED_ROUTES)
    for spec in template.functions.values():
        assert spec.handler == "app.lambda_handler"
        assert spec.runtime == "python3.12"
        assert spec.memory_size == MEMORY.get(spec.logical_id, 512)
        assert spec.code_uri.parent == TEMPLATE_PATH.parent / "functions"
        assert spec.handler_file == spec.code_uri / "app.py"
        assert spec.function_name.startswith("observai-dev-")
    assert template.function("HealthFunction").timeout == 10  # from Globals
    assert template.function("HousekeepingFunction").timeout == 60  # the function's own


def test_every_route_is_found(template) -> None:
    for logical_id, expected in EXPECTED_ROUTES.items():
        assert {(r.method, r.path) for r in template.function(logical_id).routes} == expected
    keys = [r.route_key for r in template.routes]
    assert len(keys) == len(set(keys)), "a route key appears twice"


def test_schedules_are_found(template) -> None:
    schedules = {s.function: s for s in template.schedules}
    assert set(schedules) == {
        "HousekeepingFunction",
        "PartitionUpkeepFunction",
        "AggregateMetricsFunction",
        "CleanupRetentionFunction",
        "PurgeDeletedFunction",
        "IncidentTimersFunction",
        "DispatchNotificationsFunction",
        "EvaluateAlertsFunction",
        "DeliverWebhooksFunction",
        "EscalateFunction",
        "DeliverNotificationsFunction",
        "DetectAnomaliesFunction",
        "AiWorkerFunction",
    }
    assert schedules["HousekeepingFunction"].expression == "rate(1 hour)"
    # Every 5 minutes: partitions are cheap to check, and the usage roll-up keeps quota reads small.
    assert schedules["PartitionUpkeepFunction"].expression == "rate(5 minutes)"
    # Every minute: the metric rollups trail ingestion by about lag_s (2 minutes).
    assert schedules["AggregateMetricsFunction"].expression == "rate(1 minute)"
    # At the start of every minute: alert windows end on whole minutes, judged as soon as they close.
    assert schedules["EvaluateAlertsFunction"].expression == "cron(* * * * ? *)"
    # Once a day: retention works in whole UTC days.
    assert schedules["CleanupRetentionFunction"].expression == "rate(1 day)"
    # Every 15 minutes: a deleted tenant's rows go within hours, in bounded runs.
    assert schedules["PurgeDeletedFunction"].expression == "rate(15 minutes)"
    # Every minute: a snooze ends within a minute of its time.
    assert schedules["IncidentTimersFunction"].expression == "rate(1 minute)"
    # Every minute: the safety net of the alert group timers (SQS delay messages).
    assert schedules["DispatchNotificationsFunction"].expression == "rate(1 minute)"
    # Every minute: the outbox fan-out and the webhook retries past SQS's 15-minute delays.
    assert schedules["DeliverWebhooksFunction"].expression == "rate(1 minute)"
    # Every minute: the safety net of the escalation timers (waits past SQS's 15 minutes, lost messages).
    assert schedules["EscalateFunction"].expression == "rate(1 minute)"
    # Every minute: notification retries past SQS's 15-minute delays, lost wake-ups, expired leases.
    assert schedules["DeliverNotificationsFunction"].expression == "rate(1 minute)"
    # Every minute: anomaly detectors score each step within about two minutes of its end.
    assert schedules["DetectAnomaliesFunction"].expression == "rate(1 minute)"
    # Every minute: AI tasks whose retry or debounce is due, lost wake-ups, expired leases.
    assert schedules["AiWorkerFunction"].expression == "rate(1 minute)"
    for schedule in schedules.values():
        assert schedule.source == "aws.scheduler"
        assert schedule.timezone == "UTC"


def test_environment_merges_globals_and_resolves_parameters(template) -> None:
    env = template.function("OrgsFunction").environment
    assert env["STAGE"] == "dev"
    assert env["POWERTOOLS_SERVICE_NAME"] == "observai"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ObservAI"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    assert env["CORS_ALLOW_ORIGINS"] == "*"
    # Parameters without a default (and no override) leave their variable out.
    assert "APP_SECRET_ARN" not in env
    assert "SUPABASE_URL" not in env


def test_parameter_overrides(template) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:observai-abc"
    t = load_template(
        parameters={"Stage": "prod", "AppSecretArn": arn, "CorsAllowOrigins": "https://a.test,https://b.test"}
    )
    spec = t.function("HealthFunction")
    assert spec.function_name == "observai-prod-health"
    assert spec.environment["STAGE"] == "prod"
    assert spec.environment["APP_SECRET_ARN"] == arn
    assert t.cors is not None
    assert t.cors.allow_origins == ("https://a.test", "https://b.test")


def test_cors_configuration(template) -> None:
    cors = template.cors
    assert cors is not None
    assert cors.allow_origins == ("*",)
    assert cors.allow_methods == ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    assert set(cors.allow_headers) == {
        "authorization",
        "content-type",
        "content-encoding",
        "x-api-key",
        "idempotency-key",
        "x-request-id",
    }
    assert cors.expose_headers == ("x-request-id", "retry-after")
    assert cors.max_age == 600


def test_no_secret_in_the_template() -> None:
    doc = load_yaml(TEMPLATE_PATH)
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert env["APP_SECRET_ARN"] == {"Ref": "AppSecretArn"}
    for name in env:
        assert name not in {"DATABASE_URL", "SUPABASE_JWT_SECRET", "SUPABASE_SERVICE_ROLE_KEY"}


def test_short_tags_and_conditions(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        """
Parameters:
  Stage: {Type: String, Default: dev}
  Origins: {Type: String, Default: "a,b"}
Mappings:
  Settings:
    dev: {Level: DEBUG}
    prod: {Level: INFO}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: pkg.mod.handler
      Environment:
        Variables:
          NAME: !Sub "svc-${Stage}-${AWS::Region}"
          LEVEL: !FindInMap [Settings, !Ref Stage, Level]
          PICK: !If [IsProd, big, small]
          JOINED: !Join ["|", !Split [",", !Ref Origins]]
          FIRST: !Select [0, !Split [",", !Ref Origins]]
          NOT_PROD: !If [NotProd, "yes", "no"]
          ARN: !GetAtt Fn.Arn
          GONE: !If [IsProd, kept, !Ref AWS::NoValue]
      Events:
        Nightly:
          Type: Schedule
          Properties: {Schedule: "cron(0 3 * * ? *)"}
        Any:
          Type: HttpApi
          Properties: {Path: "/{proxy+}", Method: any}
""",
    )
    spec = load_template(path).function("Fn")
    assert spec.environment == {
        "NAME": "svc-dev-us-east-1",
        "LEVEL": "DEBUG",
        "PICK": "small",
        "JOINED": "a|b",
        "FIRST": "a",
        "NOT_PROD": "yes",
        "ARN": "local-Fn-Arn",
    }
    assert spec.handler_file == tmp_path / "src" / "pkg" / "mod.py"
    assert spec.handler_name == "handler"
    assert spec.timeout == 3 and spec.memory_size == 128  # Lambda defaults
    assert [(r.method, r.path) for r in spec.routes] == [("ANY", "/{proxy+}")]
    assert [(s.expression, s.source) for s in spec.schedules] == [("cron(0 3 * * ? *)", "aws.events")]
    assert load_template(path, {"Stage": "prod"}).function("Fn").environment["GONE"] == "kept"


def test_sqs_event_sources_are_found_with_their_queue_url_variable(template) -> None:
    # Given the template's SQS event sources / When the runner reads them
    sources = {(q.function, q.queue, q.url_variable, q.batch_size) for q in template.queue_sources}
    # Then each names its queue and the function's variable holding the queue URL (the runner polls it when set)
    assert sources == {
        ("IngestDrainFunction", "SpoolQueue", "SPOOL_QUEUE_URL", 10),
        ("ExportWorkerFunction", "ExportQueue", "EXPORT_QUEUE_URL", 1),
        ("DispatchNotificationsFunction", "AlertTimerQueue", "ALERT_TIMER_QUEUE_URL", 10),
        ("DeliverWebhooksFunction", "WebhookDeliveryQueue", "WEBHOOK_QUEUE_URL", 10),
        ("EscalateFunction", "EscalationTimerQueue", "ESCALATION_QUEUE_URL", 10),
        ("DeliverNotificationsFunction", "NotificationQueue", "NOTIFY_QUEUE_URL", 10),
        ("AiWorkerFunction", "AiTaskQueue", "AI_TASK_QUEUE_URL", 5),
    }
