"""Envelope encryption of channel secrets: KMS (moto) data keys, AES-256-GCM, the encryption context, the cache, and
the development key of local and test stages (refused elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from observai import aws_clients
from observai.config import Settings
from observai.errors import Unavailable
from observai.notify.secrets import (
    VERSION_DEVELOPMENT,
    VERSION_KMS,
    SecretDoesNotOpen,
    forget_data_keys,
    hint,
    open_sealed,
    seal,
)

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXabcd"
CONTEXT = {"org_id": "0c8f5a2e-0000-4000-8000-000000000001", "contact_point_id": "0c8f5a2e-0000-4000-8000-000000000002"}


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        aws_clients.reset_clients()
        forget_data_keys()
        client = boto3.client("kms", region_name="us-east-1")
        key_id = client.create_key(Description="channel secrets")["KeyMetadata"]["KeyId"]
        try:
            yield client, key_id
        finally:
            aws_clients.reset_clients()
            forget_data_keys()

    del client


def test_sealed_with_kms_opens_in_its_context_only(kms: tuple[Any, str]) -> None:
    # Given a deployment stage with a KMS key
    _, key_id = kms
    settings = Settings(stage="prod", notify_kms_key_id=key_id)
    # When a Slack URL is sealed for a contact point
    blob = seal(SLACK_URL, CONTEXT, settings)
    # Then the blob is a versioned KMS envelope that does not contain the secret
    assert blob[0] == VERSION_KMS
    assert SLACK_URL.encode() not in blob and b"abcd" not in blob[-20:]
    # And it opens in its context
    assert open_sealed(blob, CONTEXT, settings) == SLACK_URL
    # And not in another contact point's context (KMS refuses the data key), even after the key was cached
    forget_data_keys()
    with pytest.raises(SecretDoesNotOpen):
        open_sealed(blob, {**CONTEXT, "contact_point_id": "0c8f5a2e-0000-4000-8000-000000000003"}, settings)
    assert open_sealed(blob, CONTEXT, settings) == SLACK_URL
    with pytest.raises(SecretDoesNotOpen):
        open_sealed(blob, {**CONTEXT, "org_id": "0c8f5a2e-0000-4000-8000-000000000009"}, settings)


def test_two_seals_of_one_secret_differ(kms: tuple[Any, str]) -> None:
    _, key_id = kms
    settings = Settings(stage="dev", notify_kms_key_id=key_id)
    assert seal("R" * 32, CONTEXT, settings) != seal("R" * 32, CONTEXT, settings)


def test_an_altered_blob_does_not_open(kms: tuple[Any, str]) -> None:
    _, key_id = kms
    settings = Settings(stage="prod", notify_kms_key_id=key_id)
    blob = bytearray(seal(SLACK_URL, CONTEXT, settings))
    blob[-1] ^= 1
    with pytest.raises(SecretDoesNotOpen):
        open_sealed(bytes(blob), CONTEXT, settings)
    with pytest.raises(SecretDoesNotOpen):
        open_sealed(b"\x01\x00", CONTEXT, settings)


def test_opening_again_uses_the_cached_data_key(kms: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a sealed secret opened once
    _, key_id = kms
    settings = Settings(stage="prod", notify_kms_key_id=key_id)
    blob = seal(SLACK_URL, CONTEXT, settings)
    assert open_sealed(blob, CONTEXT, settings) == SLACK_URL
    # When KMS becomes unreachable (no credentials, no endpoint)
    aws_clients.reset_clients()
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
    # Then the secret still opens (the data key was cached), but a new seal is a 503
    assert open_sealed(blob, CONTEXT, settings) == SLACK_URL
    with pytest.raises(Unavailable):
        seal(SLACK_URL, CONTEXT, settings)


def test_development_key_in_local_stages_only() -> None:
    # Given no KMS key in the test stage
    local = Settings(stage="test")
    # When a secret is sealed, it uses the development key (no AWS account needed) and opens
    blob = seal(SLACK_URL, CONTEXT, local)
    assert blob[0] == VERSION_DEVELOPMENT and SLACK_URL.encode() not in blob
    assert open_sealed(blob, CONTEXT, local) == SLACK_URL
    with pytest.raises(SecretDoesNotOpen):
        open_sealed(blob, {**CONTEXT, "contact_point_id": "other"}, local)
    # But a deployment without a KMS key refuses to seal (503), and never opens a development blob
    with pytest.raises(Unavailable):
        seal(SLACK_URL, CONTEXT, Settings(stage="prod"))
    with pytest.raises(SecretDoesNotOpen):  # even with its data key in the container's cache
        open_sealed(blob, CONTEXT, Settings(stage="prod", notify_kms_key_id="alias/anything"))


def test_hint_is_the_last_four_characters() -> None:
    assert hint(SLACK_URL) == "abcd"
