"""The ingest routes' work: read the request, authenticate, decode, ingest, answer in the right format.

The native route answers in our envelope; the OTLP routes answer as the OTLP/HTTP specification says:
200 with an Export*ServiceResponse (partial_success when items were rejected), or an error status with
a google.rpc.Status body, both in the request's encoding (protobuf or JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from observai.auth.authenticate import authenticate
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.errors import InvalidInput, ObservAIError, Unprocessable, UnsupportedMediaType
from observai.observability import logger
from observai.telemetry.body import decoded_body, header
from observai.telemetry.gc_pause import cyclic_gc_paused
from observai.telemetry.limits import now_ns
from observai.telemetry.model import Batch, Rejection, Signal
from observai.telemetry.native import decode_native
from observai.telemetry.service import IngestKey, Status, ingest, ingest_key

PROTOBUF = "application/x-protobuf"
Encoding = Literal["protobuf", "json"]
JSON = "application/json"
MAX_IDEMPOTENCY_KEY = 255


class RejectedEvent(BaseModel):
    model_config = ConfigDict(defer_build=True)
    index: int = Field(description="Position of the event in the request")
    reason: str


class IngestSummary(BaseModel):
    model_config = ConfigDict(defer_build=True)
    status: Literal["stored", "spooled", "replayed"] = Field(
        description="stored: committed; spooled: queued while the database recovers, it will be stored once;"
        " replayed: an Idempotency-Key seen before, nothing written again"
    )
    accepted: int = Field(description="Events valid and kept (including duplicates)")
    duplicates: int = Field(0, description="Accepted events already stored (same dedup key): not written again")
    rejected: list[RejectedEvent]


@dataclass(frozen=True, slots=True)
class OtlpResponse:
    status_code: int
    content_type: str
    body: bytes
    headers: dict[str, str]


def media_type(event: Mapping[str, Any]) -> str:
    return header(event.get("headers"), "content-type").split(";")[0].strip().lower()


def idempotency_key(event: Mapping[str, Any]) -> str | None:
    key = header(event.get("headers"), "idempotency-key").strip()
    if not key:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
            details={"loc": ["header", "Idempotency-Key"]},
        )
    return key


def _native_response(batch: Batch, rejected: list[Rejection], status: Status, duplicates: int) -> dict[str, Any]:
    batch.complete()
    every = sorted([*batch.rejected, *rejected], key=lambda r: r.index)
    return {
        "status": status,
        "accepted": batch.accepted - len(rejected),
        "duplicates": duplicates,
        "rejected": [{"index": r.index, "reason": r.reason} for r in every],
    }


def ingest_native(principal: Principal, event: Mapping[str, Any]) -> IngestSummary:
    """POST /v1/ingest: a JSON list of events (gzip welcome)."""
    key = ingest_key(principal)
    if media_type(event) != JSON:
        raise UnsupportedMediaType("Send a JSON list of events with Content-Type: application/json")
    idempotency = idempotency_key(event)
    body = decoded_body(event)
    with cyclic_gc_paused():
        batch = decode_native(body, now_ns=now_ns(), lazy=True)
        outcome = ingest(key, batch, body=body, idempotency_key=idempotency, respond=_native_response)
    summary = IngestSummary.model_validate(outcome.response)
    if summary.accepted == 0 and summary.rejected:
        # Nothing stored: an error, so that no client reads a 2xx as "my events are in" (the reasons kept).
        raise Unprocessable(
            f"Every event of the batch was rejected ({len(summary.rejected)}): nothing was stored",
            code="all_events_rejected",
            details={"rejected": [r.model_dump() for r in summary.rejected]},
        )
    if outcome.status == "replayed":
        summary.status = "replayed"
    return summary


# gRPC status codes for the Status body (OTLP/HTTP carries google.rpc.Status on failures).
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 3, 415: 3, 422: 3, 429: 8, 503: 14}


def otlp_export(signal: Signal, event: Mapping[str, Any]) -> OtlpResponse:
    """POST /v1/traces, /v1/metrics, /v1/logs as an OpenTelemetry exporter sends them."""
    from observai.http.exception_handlers import status_for
    from observai.telemetry.otlp import encode_export_response, encode_status

    media = media_type(event)
    encoding: Encoding = "json" if media == JSON else "protobuf"
    content_type = JSON if encoding == "json" else PROTOBUF
    try:
        if media not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(f"OTLP/HTTP takes {PROTOBUF} or {JSON}, not {media or 'nothing'}")
        rejected, message = _otlp_ingest(signal, event, encoding)
        payload = encode_export_response(signal, rejected=rejected, message=message, encoding=encoding)
        return OtlpResponse(HTTPStatus.OK, content_type, payload, {})
    except ObservAIError as exc:
        status = int(status_for(exc))
        headers = {"Retry-After": str(exc.retry_after_s)} if hasattr(exc, "retry_after_s") else {}
        if status == HTTPStatus.UNAUTHORIZED:
            headers["WWW-Authenticate"] = 'Bearer realm="observai"'
        payload = encode_status(_GRPC_CODE.get(status, 2), exc.message, encoding=encoding)
        return OtlpResponse(status, content_type, payload, headers)
    except Exception:
        logger.exception("unhandled error in an OTLP export")
        payload = encode_status(13, "Internal error; it has been logged", encoding=encoding)  # INTERNAL
        return OtlpResponse(HTTPStatus.INTERNAL_SERVER_ERROR, content_type, payload, {})


def _otlp_ingest(signal: Signal, event: Mapping[str, Any], encoding: Encoding) -> tuple[int, str | None]:
    principal = authenticate(event.get("headers") or {}, event.get("requestContext") or {}, get_settings())
    key = ingest_key(principal)
    idempotency = idempotency_key(event)
    body = decoded_body(event)
    with cyclic_gc_paused():
        return _otlp_store(signal, key, body, encoding, idempotency)


def _otlp_store(
    signal: Signal, key: IngestKey, body: bytes, encoding: Encoding, idempotency: str | None
) -> tuple[int, str | None]:
    from observai.telemetry.otlp import decode_otlp, summarise_rejections

    batch = decode_otlp(signal, body, encoding=encoding, now_ns=now_ns(), lazy=True)

    def respond(stored: Batch, rejected: list[Rejection], status: Status, duplicates: int) -> dict[str, Any]:
        every = Batch(rejected=[*stored.rejections(), *rejected])
        return {"status": status, "rejected": len(every.rejected), "message": summarise_rejections(every) or None}

    outcome = ingest(key, batch, body=body, idempotency_key=idempotency, respond=respond)
    return int(outcome.response["rejected"]), outcome.response.get("message")
