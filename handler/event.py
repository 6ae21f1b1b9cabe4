"""The CloudFormation custom-resource event, read once at the Lambda edge into a typed value.

``parse`` is the only code that reads the raw event; everything below it reads
``CustomResourceEvent`` (as AWS Lambda Powertools' ``CloudFormationCustomResourceEvent`` gives
one typed view of the request). It never raises for a JSON object: an event that is odd in a way
that changes the answer keeps that oddity as a typed value (``UnknownRequestType``,
``NotAnObject``), so the layer that owns the rule still answers it with the same Reason, and a
malformed request with a ResponseURL still gets its one FAILED response.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


class RequestType(enum.StrEnum):
    """The three requests CloudFormation sends a custom resource."""

    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"


@dataclass(frozen=True)
class UnknownRequestType:
    """A RequestType CloudFormation never sends: refused, naming the value as it came."""

    shown: str  # its repr, for the Reason ("RequestType 'Poke' is not …")
    text: str  # its str, for the log context


@dataclass(frozen=True)
class NotAnObject:
    """ResourceProperties that are present but not an object: a Create or Update fails on it."""

    type_name: str


class NotAnEvent(TypeError):
    """The payload is not a JSON object, so not a CloudFormation request; its message is the
    payload's type name."""


@dataclass(frozen=True)
class CustomResourceEvent:
    """One CloudFormation request, every field read and typed once.

    Text fields CloudFormation always sends read as ``""`` when absent or null (a response still
    echoes them); ``response_url`` is ``""`` when there is nowhere to answer.
    """

    request_type: RequestType | UnknownRequestType
    resource_type: str | None  # None when absent: "ResourceType None is not served"
    stack_id: str
    logical_resource_id: str
    physical_resource_id: str | None  # None on Create (absent, null or empty)
    request_id: str
    response_url: str
    resource_properties: Mapping[str, Any] | NotAnObject  # {} when absent or null
    old_resource_properties: Mapping[str, Any] | None  # None unless an object came

    def log_context(self) -> dict[str, str]:
        """The fields every log line of this request carries, each cut to 100 characters."""
        request_type = self.request_type
        return {
            "RequestId": self.request_id[:100],
            "RequestType": (
                request_type.text if isinstance(request_type, UnknownRequestType) else request_type
            )[:100],
            "ResourceType": (self.resource_type or "")[:100],
            "LogicalResourceId": self.logical_resource_id[:100],
        }


def parse(raw: object) -> CustomResourceEvent:
    """``raw`` (the Lambda payload) as a typed event, each of its fields read exactly once.

    Raises ``NotAnEvent`` when ``raw`` is not a JSON object.
    """
    if not isinstance(raw, Mapping):
        raise NotAnEvent(type(raw).__name__)
    request_type = raw.get("RequestType")
    resource_type = raw.get("ResourceType")
    response_url = raw.get("ResponseURL")
    physical = raw.get("PhysicalResourceId")
    properties = raw.get("ResourceProperties")
    old = raw.get("OldResourceProperties")
    return CustomResourceEvent(
        request_type=_request_type(request_type),
        resource_type=None if resource_type is None else str(resource_type),
        stack_id=_text(raw.get("StackId")),
        logical_resource_id=_text(raw.get("LogicalResourceId")),
        # Falsy ids are no ids: a Create carries none, and an empty one cannot be answered.
        physical_resource_id=str(physical) if physical else None,
        request_id=_text(raw.get("RequestId")),
        response_url=response_url if isinstance(response_url, str) else "",
        resource_properties=(
            MappingProxyType({})
            if properties is None
            else _frozen(properties)
            if isinstance(properties, Mapping)
            else NotAnObject(type(properties).__name__)
        ),
        # Any other value is as good as none: a changed RotationToken cannot be read from it.
        old_resource_properties=_frozen(old) if isinstance(old, Mapping) else None,
    )


_REQUEST_TYPES = frozenset(member.value for member in RequestType)


def _request_type(value: Any) -> RequestType | UnknownRequestType:
    # Exact values only: "create" or ["Create"] did not come from CloudFormation.
    if isinstance(value, str) and value in _REQUEST_TYPES:
        return RequestType(value)
    return UnknownRequestType(shown=repr(value), text="" if value is None else str(value))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _frozen(properties: Mapping[Any, Any]) -> Mapping[str, Any]:
    # A read-only copy: nothing below the edge can change what the next reader sees.
    return MappingProxyType(dict(properties))
