"""CloudFormation custom-resource events, shaped exactly as CloudFormation sends them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

STACK_ID = (
    "arn:aws:cloudformation:us-east-1:123456789012:stack/docker-tls-demo/"
    "5b3c2a10-1d2e-11ef-9a1b-0a1b2c3d4e5f"
)  # what stack_arn("docker-tls-demo") gives
SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:docker-tls"  # noqa: S105


def stack_arn(name: str, unique: str = "5b3c2a10-1d2e-11ef-9a1b-0a1b2c3d4e5f") -> str:
    """The StackId CloudFormation gives a stack named ``name`` (a new ``unique`` part each time
    a stack of that name is created)."""
    return f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/{unique}"


def event(
    request_type: str,
    resource_type: str,
    logical_id: str,
    properties: dict[str, Any],
    *,
    response_url: str,
    physical_id: str | None = None,
    old_properties: dict[str, Any] | None = None,
    stack_id: str = STACK_ID,
) -> dict[str, Any]:
    """One request; ``ServiceToken`` is inside the properties, as CloudFormation puts it.
    ``stack_id`` tells stacks apart: a bundle's owner is a StackId and a LogicalResourceId."""
    body: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": response_url,
        "StackId": stack_id,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": {"ServiceToken": SERVICE_TOKEN, **properties},
    }
    if physical_id is not None:
        body["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        body["OldResourceProperties"] = {"ServiceToken": SERVICE_TOKEN, **old_properties}
    return body


@dataclass
class LambdaContext:
    """The parts of the Lambda context the handler uses, with a settable time budget."""

    timeout_seconds: float = 120.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "docker-tls"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000)
