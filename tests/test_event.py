"""The event parser (handler/event.py): each field typed once, oddities kept for the answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devkit.events import STACK_ID, event
from handler.bundle import BundleNames, Item
from handler.event import (
    CustomResourceEvent,
    NotAnEvent,
    NotAnObject,
    RequestType,
    UnknownRequestType,
    parse,
)
from tests.conftest import GENERATOR, GETTER, Invoke

URL = "https://cfn.example/r?X-Amz-Signature=s"
BASE = {"Rack": "convox", "Version": "20260101000000", "KeyAlgorithm": "ECDSA-P256"}
HEX = "636f6e766f78"
CA = BundleNames.for_rack("convox").cert(Item.CA)


def _update(**changes: Any) -> dict[str, Any]:
    body = event(
        "Update", GENERATOR, "DockerTLS", BASE, response_url=URL, physical_id=HEX, old_properties={}
    )
    body.update(changes)
    return body


def test_every_field_of_an_update_is_read_into_its_typed_place() -> None:
    body = _update(OldResourceProperties={"Rack": "old"})
    parsed = parse(body)
    assert parsed.request_type is RequestType.UPDATE
    assert parsed.resource_type == GENERATOR
    assert parsed.stack_id == STACK_ID
    assert parsed.logical_resource_id == "DockerTLS"
    assert parsed.physical_resource_id == HEX
    assert parsed.request_id == body["RequestId"]
    assert parsed.response_url == URL
    assert dict(parsed.resource_properties) == body["ResourceProperties"]
    assert parsed.old_resource_properties == {"Rack": "old"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Create", RequestType.CREATE), ("Update", RequestType.UPDATE), ("Delete", "Delete")],
)
def test_the_three_request_types_cloudformation_sends_are_known(value: str, expected: str) -> None:
    assert parse(_update(RequestType=value)).request_type == expected


@pytest.mark.parametrize(
    ("value", "shown", "text"),
    [
        ("create", "'create'", "create"),
        (["Create"], "['Create']", "['Create']"),
        (None, "None", ""),
    ],
)
def test_any_other_request_type_is_kept_as_it_came_for_the_reason(
    value: Any, shown: str, text: str
) -> None:
    assert parse(_update(RequestType=value)).request_type == UnknownRequestType(shown, text)


def test_a_missing_request_type_reads_as_none_in_the_reason() -> None:
    body = _update()
    del body["RequestType"]
    assert parse(body).request_type == UnknownRequestType("None", "")


def test_a_create_has_no_physical_id_and_no_old_properties() -> None:
    parsed = parse(event("Create", GETTER, "Getter", {"Rack": "convox"}, response_url=URL))
    assert parsed.request_type is RequestType.CREATE
    assert parsed.physical_resource_id is None
    assert parsed.old_resource_properties is None


def test_an_empty_physical_id_is_no_id() -> None:
    assert parse(_update(PhysicalResourceId="")).physical_resource_id is None


def test_absent_echoed_fields_read_as_empty_text_and_a_missing_type_as_none() -> None:
    body = _update()
    for name in ("StackId", "RequestId", "LogicalResourceId", "ResourceType", "ResponseURL"):
        del body[name]
    parsed = parse(body)
    assert (parsed.stack_id, parsed.request_id, parsed.logical_resource_id) == ("", "", "")
    assert parsed.resource_type is None  # "ResourceType None is not served", as before
    assert parsed.response_url == ""


@pytest.mark.parametrize("url", [None, 42, ["https://cfn.example/r"]])
def test_a_response_url_that_is_not_text_is_nowhere_to_answer(url: Any) -> None:
    assert parse(_update(ResponseURL=url)).response_url == ""


@pytest.mark.parametrize(
    ("value", "type_name"), [(["Rack"], "list"), ("Rack=x", "str"), (42, "int")]
)
def test_resource_properties_that_are_not_an_object_are_kept_as_such(
    value: Any, type_name: str
) -> None:
    assert parse(_update(ResourceProperties=value)).resource_properties == NotAnObject(type_name)


def test_absent_or_null_resource_properties_are_none_given() -> None:
    body = _update(ResourceProperties=None)
    assert parse(body).resource_properties == {}
    del body["ResourceProperties"]
    assert parse(body).resource_properties == {}


def test_an_update_without_old_properties_has_none() -> None:
    body = _update()
    del body["OldResourceProperties"]
    assert parse(body).old_resource_properties is None
    assert parse(_update(OldResourceProperties="x")).old_resource_properties is None


@pytest.mark.parametrize("raw", [None, ["Create"], '{"RequestType": "Create"}'])
def test_a_payload_that_is_not_an_object_is_not_an_event(raw: Any) -> None:
    with pytest.raises(NotAnEvent) as caught:
        parse(raw)
    assert str(caught.value) == type(raw).__name__


def test_the_event_is_a_read_only_copy() -> None:
    body = _update()
    parsed = parse(body)
    body["ResourceProperties"]["Rack"] = "changed"
    assert parsed.resource_properties["Rack"] == "convox"
    with pytest.raises(TypeError):
        parsed.resource_properties["Rack"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        parsed.stack_id = "other"  # type: ignore[misc]
    odd = parse(_update(RequestType="Poke", ResourceProperties=[]))
    with pytest.raises(AttributeError):
        odd.resource_properties.type_name = "dict"  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        odd.request_type.shown = "'Create'"  # type: ignore[union-attr]


def test_the_log_context_cuts_each_field_to_100_characters() -> None:
    parsed = parse(_update(RequestType="P" * 300, RequestId="R" * 300, ResourceType="T" * 300))
    assert parsed.log_context() == {
        "RequestId": "R" * 100,
        "RequestType": "P" * 100,
        "ResourceType": "T" * 100,
        "LogicalResourceId": "DockerTLS",
    }


class _Recording(Mapping[str, Any]):
    """A payload that counts how often each of its fields is read."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body
        self.reads: Counter[str] = Counter()
        self.iterated = 0

    def __getitem__(self, key: str) -> Any:
        self.reads[key] += 1
        return self._body[key]

    def __iter__(self) -> Iterator[str]:
        self.iterated += 1
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)


def test_parse_reads_each_field_once() -> None:
    raw = _Recording(_update())
    assert isinstance(parse(raw), CustomResourceEvent)
    assert raw.iterated == 0
    assert set(raw.reads.values()) == {1}
    assert "RequestType" in raw.reads and "OldResourceProperties" in raw.reads


def test_a_whole_lifecycle_reads_each_field_of_each_event_once(invoke: Invoke) -> None:
    """Below the edge nothing reads the raw event again: not the rules, not the response."""
    requests = [
        event("Create", GENERATOR, "DockerTLS", BASE, response_url=URL),
        _update(OldResourceProperties=dict(BASE)),
        event("Create", GETTER, "Getter", {"Rack": "convox", "ParameterKey": CA}, response_url=URL),
        event("Delete", GENERATOR, "DockerTLS", BASE, response_url=URL, physical_id=HEX),
    ]
    for body in requests:
        raw = _Recording(body)
        response = invoke(body["RequestType"], {}, raw_event=raw)  # type: ignore[arg-type]
        assert response["Status"] == "SUCCESS", response["Reason"]
        assert response["RequestId"] == body["RequestId"]
        assert raw.iterated == 0
        assert max(raw.reads.values()) == 1, raw.reads
