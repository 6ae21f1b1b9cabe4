"""Who owns a rack's bundle: the one resource whose Delete may remove it (docs/DESIGN.md §5.1).

Two stacks may name the same Rack, and CloudFormation sends a Delete whenever a stack is
deleted, a Create is rolled back or a replaced resource is cleaned up. Acting on every such
Delete let one stack's rollback remove another stack's CA key, and that fleet's next update made
a new CA: the outage this project exists to prevent. So the bundle records its owner, the
CloudFormation resource (StackId and LogicalResourceId) that made it or adopted it, in one more
parameter, ``<hex>-docker-tls-owner``, written before anything else of a new bundle. Every other
resource naming the Rack is a *user*: it reads the bundle and writes nothing, and its Delete
leaves every parameter as it was.

Material nobody recorded (the convox handler's, or a docker-tls release's from before owners
were recorded) is adopted only by an Update that already answered with this bundle's
PhysicalResourceId, i.e. the rack's own stack; a Create that finds it is a user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Resource:
    """A CloudFormation resource, as a request names it: the owner of a bundle, or a user."""

    stack_id: str
    logical_resource_id: str

    def to_stored(self) -> str:
        """The owner parameter's value: a small JSON object, readable in the SSM console."""
        return json.dumps(
            {"StackId": self.stack_id, "LogicalResourceId": self.logical_resource_id},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(cls, value: str) -> Resource | None:
        """The owner a stored value names; None when it names none (hand-edited, corrupt)."""
        try:
            found = json.loads(value)
        except ValueError:
            return None
        if not isinstance(found, dict):
            return None
        stack_id, logical_id = found.get("StackId"), found.get("LogicalResourceId")
        if not (isinstance(stack_id, str) and stack_id and isinstance(logical_id, str)):
            return None
        if not logical_id:
            return None
        return cls(stack_id, logical_id)

    def describe(self) -> str:
        """``DockerTLS in stack my-rack``: what an operator recognises (the name in the ARN)."""
        parts = self.stack_id.split("/")
        stack = parts[1] if len(parts) >= 3 and parts[0].endswith(":stack") else self.stack_id
        return f"{self.logical_resource_id} in stack {stack}"


class Standing(Enum):
    """What a request may do to a bundle."""

    OWNER = "owner"  # ensures it (writes, repairs, rotates); its Delete removes it
    USER = "user"  # reads it only: never writes, never removes


@dataclass(frozen=True)
class Claim:
    """A request's standing towards the stored bundle, and the bookkeeping that goes with it."""

    standing: Standing
    #: Write the owner parameter (create-if-absent) before anything else: a new bundle, or an
    #: adoption. Losing that race makes the request a user of the winner's bundle.
    record: bool = False
    #: Material with no recorded owner becomes this resource's: the convox handler's legacy
    #: ``-version-track`` parameter is removed with it.
    adopts: bool = False
    #: The recorded owner, when it is another resource; None when nobody is recorded.
    owner: Resource | None = None
    #: Why: logged with every request, and a user's FAILED reason when no owner is named.
    reason: str = ""

    @property
    def owns(self) -> bool:
        return self.standing is Standing.OWNER

    def owner_text(self) -> str:
        """Whose bundle it is, as a user's refusal says it."""
        return self.owner.describe() if self.owner is not None else self.reason


def claim(
    recorded: str | None,
    requester: Resource,
    *,
    material_stored: bool,
    answered_for_bundle: bool,
) -> Claim:
    """The standing of ``requester`` towards a bundle whose owner parameter holds ``recorded``.

    ``material_stored``: any certificate or key of the bundle exists. ``answered_for_bundle``:
    the request is an Update that already carries this bundle's PhysicalResourceId, so the
    resource answered for this Rack before (a Create never has; an Update that changed Rack has
    not).
    """
    if recorded is not None:
        owner = Resource.from_stored(recorded)
        if owner == requester:
            return Claim(Standing.OWNER, reason="this resource owns the bundle")
        if owner is None:
            return Claim(Standing.USER, reason="the owner parameter is unreadable")
        return Claim(Standing.USER, owner=owner, reason=f"owned by {owner.describe()}")
    if not material_stored:
        return Claim(Standing.OWNER, record=True, reason="a new bundle")
    if answered_for_bundle:
        return Claim(
            Standing.OWNER,
            record=True,
            adopts=True,
            reason="adopted: material with no recorded owner, updated by its own resource",
        )
    # A Create or a new Rack that finds such material only uses it.
    return Claim(
        Standing.USER,
        reason="no recorded owner (made by the convox handler or an older docker-tls)",
    )


def may_delete(recorded: str | None, requester: Resource) -> bool:
    """Whether a Delete from ``requester`` may remove the bundle: only its recorded owner may."""
    return recorded is not None and Resource.from_stored(recorded) == requester
