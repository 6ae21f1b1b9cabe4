"""crhelper's decorator wiring with the CloudFormation duties it gets wrong fixed.

We keep ``CfnResource``'s registration decorators and function wrapping, and replace:

* construction: crhelper builds lambda/events/logs clients for polling we never use (cold-start
  time) and resets the root logger to DEBUG, which would log the event and its ResponseURL;
* the response: exactly one PUT per invocation, bounded retries, non-2xx logged as an error,
  the URL's signed query never logged, ``Reason`` front-loaded within 240 characters, the body
  kept under CloudFormation's 4096-byte limit, and always a non-empty PhysicalResourceId;
* the Lambda-timeout guard: answers FAILED early enough for the PUT to finish, with the
  PhysicalResourceId already chosen, instead of crhelper's empty one;
* Delete: no ``sleep_on_delete`` wait.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from crhelper import CfnResource

from handler import logs

log = logging.getLogger(__name__)

SUCCESS, FAILED = "SUCCESS", "FAILED"
MAX_REASON = 240
MAX_RESPONSE_BYTES = 4096
#: Lets the local receiver (and tests) use a private CA for the response URL's HTTPS.
RESPONSE_CA_BUNDLE_ENV = "DOCKER_TLS_RESPONSE_CA_BUNDLE"


class RequestFailed(Exception):
    """An expected failure whose message is the whole Reason CloudFormation shows."""


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


def front_loaded(reason: str) -> str:
    """``reason`` cut to CloudFormation's display budget, keeping its start (what and why)."""
    reason = " ".join(reason.split())
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def send_response(
    url: str,
    body: Mapping[str, Any],
    *,
    attempts: int = 4,
    timeout: float = 10.0,
    sleep: Callable[[float], None] | None = None,
) -> bool:
    """PUT ``body`` to the presigned ``url``; True once a 2xx arrives.

    Bounded: a URL that cannot be reached must not spin until the Lambda is killed.
    """
    payload = json.dumps(body).encode("utf-8")
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    context = ssl.create_default_context(cafile=os.environ.get(RESPONSE_CA_BUNDLE_ENV) or None)
    for attempt in range(1, attempts + 1):
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
        try:
            connection.request(
                "PUT",
                path or "/",
                body=payload,
                headers={"content-type": "", "content-length": str(len(payload))},
            )
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            log.warning(
                "could not deliver the response",
                extra={
                    "attempt": attempt,
                    "url": logs.url_for_logs(url),
                    "error": str(error),
                },
            )
        else:
            if 200 <= status < 300:
                log.info(
                    "response delivered",
                    extra={"status": body.get("Status"), "http_status": status},
                )
                return True
            log.error(
                "CloudFormation refused the response",
                extra={"attempt": attempt, "http_status": status, "url": logs.url_for_logs(url)},
            )
        finally:
            connection.close()
        if attempt < attempts:
            (sleep or time.sleep)(min(2.0 * attempt, 5.0))
    log.error("gave up delivering the response", extra={"attempts": attempts})
    return False


def response_body(
    event: Mapping[str, Any],
    *,
    status: str,
    physical_resource_id: str,
    reason: str = "",
    data: Mapping[str, str] | None = None,
    no_echo: bool = False,
) -> dict[str, Any]:
    """The CloudFormation response, guaranteed to serialize within 4096 bytes."""
    body: dict[str, Any] = {
        "Status": status,
        "Reason": front_loaded(reason) if reason else "",
        "PhysicalResourceId": physical_resource_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "NoEcho": no_echo,
        "Data": dict(data or {}),
    }
    try:
        size = len(json.dumps(body).encode("utf-8"))
    except (TypeError, ValueError):
        size = -1
    if size < 0 or size > MAX_RESPONSE_BYTES:
        problem = "is not JSON" if size < 0 else f"would be {size} bytes"
        body.update(
            Status=FAILED,
            Data={},
            Reason=front_loaded(
                f"Response {problem}, over CloudFormation's {MAX_RESPONSE_BYTES}-byte limit: "
                "use a shorter Rack or a smaller key, or read the value from SSM."
            ),
        )
    return body


class CustomResource(CfnResource):
    """crhelper's ``CfnResource`` answering every invocation exactly once, safely."""

    def __init__(self, *, timeout_margin: float = 3.0, response_attempts: int = 4) -> None:
        # Deliberately not CfnResource.__init__ (see the module docstring); these are the
        # attributes its registration and wrapping code use.
        self._create_func = self._update_func = self._delete_func = None
        self._poll_create_func = self._poll_update_func = self._poll_delete_func = None
        self._timer: threading.Timer | None = None
        self._init_failed = None
        self._timeout_margin = timeout_margin
        self._response_attempts = response_attempts
        self._lock = threading.Lock()
        self._responded = False
        self._event: Mapping[str, Any] = {}
        self.Status, self.Reason, self.PhysicalResourceId = SUCCESS, "", ""
        self.Data: dict[str, str] = {}
        self.NoEcho = False

    def __call__(self, event: Mapping[str, Any], context: LambdaContext) -> None:
        """Run the registered function for the event's RequestType and answer once."""
        logs.bind(
            RequestId=str(event.get("RequestId", "")),
            RequestType=str(event.get("RequestType", "")),
            ResourceType=str(event.get("ResourceType", "")),
            LogicalResourceId=str(event.get("LogicalResourceId", "")),
        )
        if not event.get("ResponseURL"):
            log.error("event has no ResponseURL: nothing can answer CloudFormation; ignored")
            return
        self._event = event
        self._responded = False
        self.Status, self.Reason, self.Data, self.NoEcho = SUCCESS, "", {}, False
        # Chosen before any work, so even a timeout or crash answers with a usable id: the
        # event's own on Update/Delete, a marker on Create that a rollback Delete ignores.
        self.PhysicalResourceId = str(
            event.get("PhysicalResourceId") or f"failed-{event.get('RequestId', 'unknown')}"
        )
        log.info("request received")
        request_type = event.get("RequestType")
        function = {
            "Create": self._create_func,
            "Update": self._update_func,
            "Delete": self._delete_func,
        }.get(str(request_type))
        try:
            self._start_timer(context)
            if function is None:
                self.Status = FAILED
                self.Reason = (
                    f"RequestType {request_type!r} is not Create, Update or Delete: "
                    "this event did not come from CloudFormation."
                )
            else:
                self._run(function, event, context)
            self._send()
        finally:
            if self._timer:
                self._timer.cancel()

    def _run(self, function: Callable[..., Any], event: Any, context: Any) -> None:
        try:
            returned = function(event, context)
        except Exception as error:  # every failure becomes FAILED, never a missing response
            # An expected failure carries its own explanation; anything else gets a traceback.
            log.error("request failed", exc_info=not isinstance(error, RequestFailed))
            self.Status, self.Reason = FAILED, str(error) or type(error).__name__
            return
        if returned:
            self.PhysicalResourceId = str(returned)

    def _start_timer(self, context: LambdaContext) -> None:
        remaining = context.get_remaining_time_in_millis() / 1000.0
        self._timer = threading.Timer(max(remaining - self._timeout_margin, 0.1), self._timeout)
        self._timer.daemon = True
        self._timer.start()

    def _timeout(self) -> None:
        log.error("about to run out of Lambda time; answering FAILED")
        self._send(
            FAILED,
            "Timed out before the bundle was ensured: nothing more is written after this; "
            "retry the stack operation (a raised Lambda Timeout helps with RSA-4096).",
        )

    def _send(self, status: str | None = None, reason: str = "", send_response: Any = None) -> None:
        with self._lock:
            if self._responded:
                log.warning("a response was already sent for this request; not sending another")
                return
            self._responded = True
            body = response_body(
                self._event,
                status=status or self.Status,
                physical_resource_id=self.PhysicalResourceId,
                reason=reason if status else self.Reason,
                data=self.Data if (status or self.Status) == SUCCESS else {},
                no_echo=self.NoEcho,
            )
            if body["Status"] == FAILED:
                log.warning("answering FAILED", extra={"reason": body["Reason"]})
            send_response_ = send_response or self.send_response
            send_response_(str(self._event["ResponseURL"]), body)

    def send_response(self, url: str, body: Mapping[str, Any]) -> bool:
        return send_response(url, body, attempts=self._response_attempts)

    def answered(self) -> bool:
        """Whether this invocation's one response has gone (the timeout guard may send it)."""
        return self._responded
