"""Answer chosen HTTP attempts of a boto3 operation with an error, before moto sees them.

A `before-send` handler registered first on the client for one operation returns a botocore
response for the attempts listed (and keeps moto from executing them), so botocore's real retry machinery (adaptive mode, see routing/aws.py)
handles it exactly as it would an AWS answer. Retry sleeps are recorded instead of slept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

THROTTLING = ("ThrottlingException", 400, "Rate exceeded")
SERVICE_UNAVAILABLE = ("ServiceUnavailable", 503, "Service is unavailable")
INTERNAL = ("InternalFailure", 500, "An internal error occurred")


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    if len(data) < 24:
        return bytes([0x60 + len(data)]) + data
    return bytes([0x78, len(data)]) + data


def _body(protocol: str, code: str, message: str) -> tuple[bytes, dict[str, str]]:
    if protocol == "smithy-rpc-v2-cbor":  # CloudWatch's wire format in current botocore
        body = bytes([0xA2]) + _cbor_text("__type") + _cbor_text(code) + _cbor_text("message") + _cbor_text(message)
        return body, {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"}
    if protocol == "query":
        xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
               "<RequestId>r</RequestId></ErrorResponse>")
        return xml.encode(), {"Content-Type": "text/xml"}
    return json.dumps({"__type": code, "message": message}).encode(), {
        "Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}


class Injector:
    """`plan(n)` for the n-th attempt (0-based) returns an error triple, or None to let moto answer."""

    def __init__(self, client: Any, operation: str, plan: Callable[[int], tuple[str, int, str] | None]) -> None:
        self.attempts = 0
        self.injected = 0
        self._plan = plan
        model = client.meta.service_model
        self._protocol = getattr(model, "resolved_protocol", None) or model.protocol
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"before-send.{service}.{operation}", self._handler)

    def _handler(self, request: Any, **_: Any) -> AWSResponse | None:
        n = self.attempts
        self.attempts += 1
        error = self._plan(n)
        if error is None:
            return None
        self.injected += 1
        # botocore emits before-send to EVERY handler and keeps the first response, so moto would
        # still execute the call behind our error. Point the request nowhere moto recognises.
        request.url = "https://injected-fault.invalid/"
        code, status, message = error
        body, headers = _body(self._protocol, code, message)
        return AWSResponse(request.url, status, {**headers, "x-amzn-RequestId": "r"}, MockRawResponse(body))


def first(n: int, error: tuple[str, int, str] = THROTTLING) -> Callable[[int], tuple[str, int, str] | None]:
    return lambda attempt: error if attempt < n else None


def always(error: tuple[str, int, str] = THROTTLING) -> Callable[[int], tuple[str, int, str] | None]:
    return lambda attempt: error
