"""Handlers load by file path under unique module names and run with their template environment."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from observai_local.functions import FunctionError, Invoker, applied_environment, local_overrides
from observai_local.scheduler import Scheduler
from observai_local.template import load_template

TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 7
    MemorySize: 256
    Environment:
      Variables:
        STAGE: !Ref Stage
        SHARED: from-globals
        APP_SECRET_ARN: arn:aws:secretsmanager:us-east-1:123456789012:secret:x
Resources:
  OneFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: one/
      Handler: app.lambda_handler
      Environment:
        Variables: {WHO: one}
  TwoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: two/
      Handler: app.lambda_handler
      Environment:
        Variables: {WHO: two}
      Events:
        Tick:
          Type: ScheduleV2
          Properties: {ScheduleExpression: rate(1 minute)}
  MissingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: missing/
      Handler: app.lambda_handler
"""

HANDLER = """
import os
import helper  # a sibling module, importable as in Lambda's task root

WHO_AT_IMPORT = os.environ.get("WHO")

def lambda_handler(event, context):
    return {
        "module": __name__,
        "who": os.environ.get("WHO"),
        "who_at_import": WHO_AT_IMPORT,
        "stage": os.environ.get("STAGE"),
        "shared": os.environ.get("SHARED"),
        "secret_arn": os.environ.get("APP_SECRET_ARN"),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "helper": helper.VALUE,
        "event": event,
    }
"""


@pytest.fixture
def template(tmp_path: Path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(HANDLER)
        (tmp_path / name / "helper.py").write_text(f"VALUE = {name!r}\n")
    return load_template(tmp_path / "template.yaml")


def test_two_app_py_files_load_separately_with_their_environment(template, monkeypatch) -> None:
    monkeypatch.delenv("WHO", raising=False)
    invoker = Invoker(template, local_overrides("test", "postgresql://localhost/x"))
    one = invoker.invoke("OneFunction", {"n": 1})
    two = invoker.invoke("TwoFunction", {"n": 2})
    assert one["module"] == "observai_fn_OneFunction" and two["module"] == "observai_fn_TwoFunction"
    assert (one["who"], one["who_at_import"], two["who"], two["who_at_import"]) == ("one", "one", "two", "two")
    assert one["stage"] == "test" and one["shared"] == "from-globals"
    assert one["secret_arn"] is None  # removed locally
    assert one["function_name"] == "OneFunction" and one["memory"] == 256
    assert 6000 < one["remaining_ms"] <= 7000
    assert one["event"] == {"n": 1}
    assert one["helper"] == "one"
    assert "WHO" not in os.environ  # restored after the call


def test_missing_handler_file(template) -> None:
    with pytest.raises(FunctionError, match="does not exist"):
        Invoker(template).invoke("MissingFunction", {})
    with pytest.raises(KeyError, match="NoSuchFunction"):
        Invoker(template).invoke("NoSuchFunction", {})


def test_applied_environment_restores(monkeypatch) -> None:
    monkeypatch.setenv("OBSERVAI_T_KEEP", "before")
    monkeypatch.delenv("OBSERVAI_T_NEW", raising=False)
    with applied_environment({"OBSERVAI_T_KEEP": None, "OBSERVAI_T_NEW": "x"}):
        assert "OBSERVAI_T_KEEP" not in os.environ and os.environ["OBSERVAI_T_NEW"] == "x"
    assert os.environ["OBSERVAI_T_KEEP"] == "before" and "OBSERVAI_T_NEW" not in os.environ


def test_local_overrides_pass_supabase_settings_through(monkeypatch) -> None:
    monkeypatch.setenv("SUPABASE_JWT_SECRET", "s" * 40)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    overrides = local_overrides("local", "postgresql://db")
    assert overrides["STAGE"] == "local" and overrides["DATABASE_URL"] == "postgresql://db"
    assert overrides["APP_SECRET_ARN"] is None
    assert overrides["POWERTOOLS_TRACE_DISABLED"] == "true" and overrides["POWERTOOLS_METRICS_DISABLED"] == "true"
    assert overrides["SUPABASE_JWT_SECRET"] == "s" * 40 and "SUPABASE_URL" not in overrides


def test_local_stages_let_webhooks_reach_loopback_receivers_unless_the_shell_says_otherwise(monkeypatch) -> None:
    # Given no setting in the shell: local and test runs deliver to receivers on localhost
    monkeypatch.delenv("WEBHOOK_ALLOW_LOOPBACK", raising=False)
    assert local_overrides("local")["WEBHOOK_ALLOW_LOOPBACK"] == "true"
    assert local_overrides("test")["WEBHOOK_ALLOW_LOOPBACK"] == "true"
    # And the shell's value wins (to try the guard locally)
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "false")
    assert local_overrides("local")["WEBHOOK_ALLOW_LOOPBACK"] == "false"


def test_local_runs_seal_channel_secrets_without_aws_and_reach_local_stand_ins(monkeypatch) -> None:
    # Given no KMS key in the shell: the template's key (a deploy-time resource) is not used locally, so channel
    # secrets are sealed with the development key (no AWS account needed)
    monkeypatch.delenv("NOTIFY_KMS_KEY_ID", raising=False)
    monkeypatch.delenv("NOTIFY_ALLOW_LOOPBACK", raising=False)
    overrides = local_overrides("local")
    assert overrides["NOTIFY_KMS_KEY_ID"] is None
    # And Slack and PagerDuty stand-ins on localhost are reachable in local stages
    assert overrides["NOTIFY_ALLOW_LOOPBACK"] == "true"
    # And the shell's key wins when there is one
    monkeypatch.setenv("NOTIFY_KMS_KEY_ID", "alias/mine")
    assert local_overrides("local")["NOTIFY_KMS_KEY_ID"] == "alias/mine"


def test_scheduler_invokes_due_schedules(template) -> None:
    calls: list[tuple[str, dict]] = []
    done = threading.Event()

    class Recorder(Invoker):
        def invoke(self, logical_id, event):
            calls.append((logical_id, event))
            done.set()

    scheduler = Scheduler(Recorder(template))
    assert [s.function for s in scheduler.schedules] == ["TwoFunction"]
    scheduler.start(run_now=True)
    try:
        assert done.wait(5)
    finally:
        scheduler.stop()
    assert len(calls) == 1  # then not again before its next minute
    logical_id, event = calls[0]
    assert logical_id == "TwoFunction"
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
