"""The CloudFormation edge: one typed event in, exactly one response out, safely.

``CustomResource`` keeps crhelper's shape and none of its code: it no longer subclasses
``CfnResource``, and crhelper is no longer a dependency, nor in the artifact. The subclass
inherited only three two-line setters (``create``/``update``/``delete``) and had to skip or
replace the rest. crhelper's constructor builds boto3 clients for polling we never
use (cold-start time) and resets the root logger to DEBUG (which would log the ResponseURL);
its ``__call__``, ``_send`` and ``_timeout`` pass the raw event on, may answer twice or not at
all, keep the tail of a long Reason, answer a timeout with an empty PhysicalResourceId and sleep
before a Delete's answer; and what stayed inherited was a trap (``poll_create`` registered a
poller nothing runs). What crhelper does well, the shape of the Lambda edge, we keep: a few
decorators registering functions of ``(event, context)`` that return the PhysicalResourceId,
with ``Data`` and ``NoEcho`` set on the helper. Ours get the typed ``CustomResourceEvent``
(``handler/event.py``), parsed once here, and this module adds what crhelper lacks: one PUT per
invocation with bounded retries, a refused PUT logged as an error, the signed query never
logged, ``Reason`` front-loaded within 240 characters, the body within 4096 bytes, always a
non-empty PhysicalResourceId, and a timeout guard that answers FAILED in time with that id.
"""

from __future__ import annotations

import contextvars
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

from . import logs
from .event import CustomResourceEvent, NotAnEvent, RequestType, UnknownRequestType, parse

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
    deadline: float | None = None,
) -> bool:
    """PUT ``body`` to the presigned ``url``; True once a 2xx arrives.

    Bounded: a URL that cannot be reached must not spin until the Lambda is killed. With a
    ``deadline`` (a ``time.monotonic()`` value: the end of the Lambda's time), no attempt or
    pause runs past it, so the invocation still ends on its own and logs why.
    """
    payload = json.dumps(body).encode("utf-8")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        log.error("the ResponseURL is not a URL: no response sent", extra={"url": "[unparsable]"})
        return False
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    cafile = os.environ.get(RESPONSE_CA_BUNDLE_ENV) or None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        log.error(
            f"{RESPONSE_CA_BUNDLE_ENV}={cafile} cannot be used: no response sent",
            extra={"error": str(error)},
        )
        return False
    for attempt in range(1, attempts + 1):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            log.error("no Lambda time left to deliver the response", extra={"attempt": attempt})
            return False
        per_try = timeout if left is None else max(min(timeout, left), 0.1)
        connection: http.client.HTTPConnection | None = None
        try:
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.netloc, timeout=per_try, context=context
                )
            else:
                connection = http.client.HTTPConnection(parts.netloc, timeout=per_try)
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
            if connection is not None:
                connection.close()
        if attempt < attempts:
            pause = min(2.0 * attempt, 5.0)
            if deadline is not None and time.monotonic() + pause >= deadline:
                log.error("no Lambda time left to retry the response", extra={"attempt": attempt})
                return False
            (sleep or time.sleep)(pause)
    log.error("gave up delivering the response", extra={"attempts": attempts})
    return False


def response_body(
    event: CustomResourceEvent,
    *,
    status: str,
    physical_resource_id: str,
    reason: str = "",
    data: Mapping[str, str] | None = None,
    no_echo: bool,
) -> dict[str, Any]:
    """The CloudFormation response, guaranteed to serialize within 4096 bytes."""
    body: dict[str, Any] = {
        "Status": status,
        # Redacted like every log line: an unexpected exception's text may quote a value.
        "Reason": front_loaded(logs.redact(reason)) if reason else "",
        "PhysicalResourceId": physical_resource_id,
        "StackId": event.stack_id,
        "RequestId": event.request_id,
        "LogicalResourceId": event.logical_resource_id,
        "NoEcho": no_echo,
        "Data": dict(data or {}),
    }
    size: int | None
    try:
        size = len(json.dumps(body).encode("utf-8"))
    except (TypeError, ValueError):
        size = None  # not JSON
    if size is None or size > MAX_RESPONSE_BYTES:
        problem = "is not JSON" if size is None else f"would be {size} bytes"
        body.update(
            Status=FAILED,
            Data={},
            Reason=front_loaded(
                f"Response {problem}, over CloudFormation's {MAX_RESPONSE_BYTES}-byte limit: "
                "use a shorter Rack or a smaller key, or read the value from SSM."
            ),
        )
    return body


#: A registered function: the typed event and the Lambda context in, a PhysicalResourceId (or
#: None to keep the one chosen up front) out.
Function = Callable[[CustomResourceEvent, LambdaContext], str | None]


class CustomResource:
    """crhelper's decorator interface, answering every invocation exactly once, safely."""

    def __init__(self, *, timeout_margin: float = 3.0, response_attempts: int = 4) -> None:
        self._functions: dict[RequestType, Function] = {}
        self._timer: threading.Timer | None = None
        self._timeout_margin = timeout_margin
        self._response_attempts = response_attempts
        self._lock = threading.Lock()
        self._responded = False
        self._event: CustomResourceEvent | None = None
        self._failure_id = ""
        self._deadline: float | None = None
        self.Status, self.Reason, self.PhysicalResourceId = SUCCESS, "", ""
        self.Data: dict[str, str] = {}
        self.NoEcho = False

    def create(self, function: Function) -> Function:
        """Register ``function`` for Create; it is returned unchanged, so decorators stack."""
        self._functions[RequestType.CREATE] = function
        return function

    def update(self, function: Function) -> Function:
        """Register ``function`` for Update."""
        self._functions[RequestType.UPDATE] = function
        return function

    def delete(self, function: Function) -> Function:
        """Register ``function`` for Delete."""
        self._functions[RequestType.DELETE] = function
        return function

    def __call__(self, raw: object, context: LambdaContext) -> None:
        """Parse the Lambda payload once, run the registered function and answer once."""
        try:
            event = parse(raw)
        except NotAnEvent as error:
            logs.bind()
            log.error(
                "the event is not a JSON object, so not a CloudFormation request; ignored",
                extra={"event_type": str(error)},
            )
            return
        logs.bind(**event.log_context())
        if not event.response_url:
            log.error("event has no ResponseURL: nothing can answer CloudFormation; ignored")
            return
        self._event = event
        self._responded = False
        self.Status, self.Reason, self.Data, self.NoEcho = SUCCESS, "", {}, False
        # Chosen before any work, so even a timeout or crash answers with a usable id: the
        # event's own on Update/Delete, a marker on Create that a rollback Delete ignores.
        # Every FAILED answer carries it, whatever the function returned.
        self._failure_id = event.physical_resource_id or f"failed-{event.request_id or 'unknown'}"
        self.PhysicalResourceId = self._failure_id
        log.info("request received")
        request_type = event.request_type
        try:
            self._start_timer(context)
            if isinstance(request_type, UnknownRequestType):
                self.Status = FAILED
                self.Reason = (
                    f"RequestType {request_type.shown} is not Create, Update or Delete: "
                    "this event did not come from CloudFormation."
                )
            elif request_type not in self._functions:
                self.Status = FAILED
                self.Reason = f"No function is registered for RequestType {request_type.value!r}."
            else:
                self._run(self._functions[request_type], event, context)
            self._send()
        except Exception:  # our own bug must not leave the stack waiting for an hour
            log.error("unexpected error while answering", exc_info=True)
            self._send(FAILED, "Internal error in the custom resource: see its logs; retry.")
        finally:
            if self._timer:
                self._timer.cancel()

    def _run(self, function: Function, event: CustomResourceEvent, context: LambdaContext) -> None:
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
        # The response must be sent before the Lambda's end, with a little time to return.
        self._deadline = time.monotonic() + remaining - 0.25
        # The guard runs in the log context (RequestId, …) of this invocation.
        run_in_context = contextvars.copy_context().run
        self._timer = threading.Timer(
            max(remaining - self._timeout_margin, 0.1), run_in_context, args=(self._timeout,)
        )
        self._timer.daemon = True
        self._timer.start()

    def _timeout(self) -> None:
        log.error("about to run out of Lambda time; answering FAILED")
        self._send(
            FAILED,
            "Timed out before the bundle was ensured: nothing more is written after this; "
            "retry the stack operation (a raised Lambda Timeout helps with RSA-4096).",
        )

    def _send(self, status: str | None = None, reason: str = "") -> None:
        with self._lock:
            if self._responded:
                log.warning("a response was already sent for this request; not sending another")
                return
            event = self._event
            if event is None:  # nothing was parsed: there is nowhere to answer
                return
            self._responded = True
            status = status or self.Status
            body = response_body(
                event,
                status=status,
                physical_resource_id=self.PhysicalResourceId,
                reason=reason or self.Reason,
                data=self.Data if status == SUCCESS else {},
                no_echo=self.NoEcho,
            )
            if body["Status"] == FAILED:
                # A FAILED answer always carries the id chosen up front: on a Create, the marker
                # a rollback Delete ignores, even when the guard fires just after the function
                # returned the bundle's id, or the size guard turns a SUCCESS into FAILED.
                body["PhysicalResourceId"] = self._failure_id
                log.warning("answering FAILED", extra={"reason": body["Reason"]})
            self.send_response(event.response_url, body)

    def send_response(self, url: str, body: Mapping[str, Any]) -> bool:
        return send_response(url, body, attempts=self._response_attempts, deadline=self._deadline)

    def answered(self) -> bool:
        """Whether this invocation's one response has gone (the timeout guard may send it)."""
        return self._responded
