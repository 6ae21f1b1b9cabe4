"""Lambda entry point: CloudFormation events in, calls to the bundle logic, responses out.

Nothing here decides anything about certificates; it translates. The raw event never reaches
this module's functions: ``helper`` parses it once (``handler/event.py``) and each function
reads the typed ``CustomResourceEvent``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

# Every request's first step is an SSM client (handler/store.py makes it on first use, so that
# no client exists at import): importing boto3 here puts its ~50 ms (make bench) in the init phase,
# where it was while crhelper (which imports boto3) was a dependency, not in the first request.
import boto3  # noqa: F401

from . import GENERATOR, GETTER, logs
from .certificates import fingerprint
from .cfn import CustomResource, LambdaContext, RequestFailed, response_body
from .ensure import NotConverged, NotOwner, Outcome, Requester, ensure
from .event import CustomResourceEvent, NotAnObject, RequestType
from .names import PARAMETER_SUFFIXES, BundleNames, Item, rack_prefix
from .ownership import Resource, may_delete
from .properties import (
    PropertyError,
    parse_generator,
    parse_getter,
    parse_rack,
    previous_rotation_stage,
    rotation_requested,
)
from .rotation import StageRefused
from .store import ParameterStore, Stopped, StoreError

log = logging.getLogger(__name__)
logs.setup()
helper = CustomResource()
store = ParameterStore()


def generator_data(outcome: Outcome) -> dict[str, str]:
    """``Data`` of a generator response: parameter names and public CA facts, no key."""
    names = outcome.names
    return {
        "CACertSSMKey": names.cert(Item.CA),
        "CAKeySSMKey": names.key(Item.CA),
        "ServerCertSSMKey": names.cert(Item.SERVER),
        "ServerKeySSMKey": names.key(Item.SERVER),
        "CertSSMKey": names.cert(Item.CLIENT),
        "KeySSMKey": names.key(Item.CLIENT),
        "CACertificate": outcome.ca_cert_value,
        "CAFingerprint": fingerprint(outcome.ca_cert),
        "TrustedCAFingerprints": ",".join(fingerprint(cert) for cert in outcome.trusted),
        "CANotAfter": outcome.ca_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Action": outcome.action.value,
    }


#: botocore's names for an SSM endpoint that could not be reached or never answered.
_UNREACHABLE = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)


def _store_failure(error: StoreError) -> RequestFailed:
    if error.code in _UNREACHABLE:
        # Permissions are not the problem when nothing answered: say what is.
        return RequestFailed(
            f"{error}. The SSM endpoint did not answer (network, VPC endpoint or "
            "AWS_ENDPOINT_URL_SSM). Nothing was regenerated or lost: retry."
        )
    return RequestFailed(
        f"{error}. Nothing was regenerated or lost: check the function role's SSM and KMS "
        "permissions (or wait out throttling) and retry."
    )


def _property_failure(error: PropertyError) -> RequestFailed:
    return RequestFailed(f"{error}. Nothing was read or written; fix the property.")


def _properties(event: CustomResourceEvent) -> Mapping[str, Any]:
    properties = event.resource_properties
    if isinstance(properties, NotAnObject):
        raise RequestFailed(
            f"ResourceProperties must be an object of properties, got "
            f"{properties.type_name}. Nothing was read or written; fix the template."
        )
    return properties


def _rotate(event: CustomResourceEvent, properties: Mapping[str, Any]) -> bool:
    if event.request_type is not RequestType.UPDATE:
        return False
    old = event.old_resource_properties
    if old is None:
        # CloudFormation always sends them; without them a changed RotationToken cannot be
        # told from an unchanged one, and guessing "changed" would replace a healthy CA.
        log.warning("Update without OldResourceProperties: RotationToken not compared")
        return False
    return rotation_requested(properties, old)


def _resource(event: CustomResourceEvent) -> Resource:
    """The CloudFormation resource a request comes from: a bundle's owner, or a user of it."""
    return Resource(event.stack_id, event.logical_resource_id)


def _ensure(event: CustomResourceEvent) -> str:
    now = dt.datetime.now(dt.UTC)
    properties = _properties(event)
    try:
        props = parse_generator(properties, now)
    except PropertyError as error:
        raise _property_failure(error) from None
    rotate = _rotate(event, properties)
    update = event.request_type is RequestType.UPDATE
    old = event.old_resource_properties
    is_update = update and old is not None
    requester = Requester(
        _resource(event),
        answered_for_bundle=update and event.physical_resource_id == rack_prefix(props.rack),
    )
    try:
        outcome = ensure(
            store,
            props,
            rotate=rotate,
            now=now,
            previous_stage=previous_rotation_stage(old) if is_update else None,
            is_update=is_update,
            requester=requester,
            should_stop=helper.answered,
        )
    except StageRefused as error:
        raise RequestFailed(f"{error} Nothing was written.") from None
    except NotOwner as error:
        raise RequestFailed(str(error)) from None
    except StoreError as error:
        raise _store_failure(error) from None
    except NotConverged as error:
        raise RequestFailed(f"{error}; retry the stack operation.") from None
    except Stopped as error:
        raise RequestFailed(f"Timed out: {error}") from None
    helper.Data = generator_data(outcome)
    log.info(
        "bundle ensured",
        extra={
            "action": outcome.action.value,
            "ca_fingerprint": helper.Data["CAFingerprint"],
            "written": outcome.written,
            "removed": outcome.removed,
        },
    )
    return rack_prefix(props.rack)


def _get(event: CustomResourceEvent) -> str:
    try:
        props = parse_getter(_properties(event))
    except PropertyError as error:
        raise _property_failure(error) from None
    names = BundleNames.for_rack(props.rack)
    key = props.parameter_key
    if key not in names.material:
        scope = "this project's" if key.endswith(PARAMETER_SUFFIXES) else "a docker-tls"
        raise _property_failure(
            PropertyError(
                "ParameterKey",
                f"{key[:80]!r} is not {scope} parameter of Rack {props.rack!r}: use a name "
                f"the generator returned, e.g. {names.cert(Item.CA)}",
            )
        )
    try:
        found = store.read([key])
    except StoreError as error:
        raise _store_failure(error) from None
    if key not in found:
        raise RequestFailed(
            f"ParameterKey {key} is not in SSM: create the generator for Rack "
            f"{props.rack!r} first, or check the name."
        )
    value = found[key].value
    data = {"Value": value}
    no_echo = names.is_key(key)
    body = response_body(
        event, status="SUCCESS", physical_resource_id=key, data=data, no_echo=no_echo
    )
    if body["Status"] != "SUCCESS":
        raise RequestFailed(
            f"ParameterKey {key} holds {len(value)} characters, too many for CloudFormation's "
            "4096-byte response: read it from SSM (get-parameter --with-decryption) instead."
        )
    helper.NoEcho = no_echo
    helper.Data = data
    # A getter's identity never changes: a new id on Update would read to CloudFormation as a
    # replacement (getters adopted from the convox handler carry hex(Rack) as theirs).
    return event.physical_resource_id or key


@helper.create
@helper.update
def create_or_update(event: CustomResourceEvent, context: LambdaContext) -> str:
    resource_type = event.resource_type
    if resource_type == GENERATOR:
        return _ensure(event)
    if resource_type == GETTER:
        return _get(event)
    raise RequestFailed(
        f"ResourceType {resource_type!r} is not served by this function: use {GENERATOR} "
        f"or {GETTER}."
    )


@helper.delete
def delete(event: CustomResourceEvent, context: LambdaContext) -> None:
    if event.resource_type != GENERATOR:
        return  # a getter read nothing; an unknown type created nothing
    try:
        rack = parse_rack(_properties(event))
    except (PropertyError, RequestFailed):
        log.info("Delete without a valid Rack: nothing of ours to remove")
        return
    names = BundleNames.for_rack(rack)
    requester = _resource(event)
    try:
        recorded = store.read([names.owner]).get(names.owner)
        if not may_delete(recorded.value if recorded else None, requester):
            # A stack that only used this Rack's bundle (its Create found it), a bundle nobody
            # recorded (the convox handler's), or another resource's: never ours to remove.
            log.info(
                "bundle kept: this resource does not own it",
                extra={
                    "owner": "none recorded" if recorded is None else recorded.value,
                    "requester": requester.to_stored(),
                },
            )
            return
        # The owner parameter goes last, alone: a Delete cut short leaves it, so the retry
        # (or the stack's next delete attempt) is still the owner's and finishes.
        removed = store.delete(
            [name for name in names.everything if name != names.owner],
            should_stop=helper.answered,
        )
        removed += store.delete([names.owner], should_stop=helper.answered)
    except StoreError as error:
        raise RequestFailed(f"{error}. Retry the delete once the role may delete.") from None
    except Stopped as error:
        raise RequestFailed(f"Timed out: {error}") from None
    log.info("bundle removed", extra={"removed": len(removed)})


def lambda_handler(event: object, context: LambdaContext) -> None:
    """The Lambda entry point (``handler.app.lambda_handler``): the payload is parsed once, in
    ``helper``, and every function above reads the typed event."""
    helper(event, context)
