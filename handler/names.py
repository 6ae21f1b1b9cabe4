"""The SSM parameter names of a rack's bundle: one layout, every name derived from ``Rack``.

Parameters are named ``<hex(Rack)>-docker-tls-<suffix>`` (docs/DESIGN.md §2): the hex keeps any
stack name a valid parameter name and is the generator's PhysicalResourceId.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Item(Enum):
    """The three certificate/key pairs of a bundle."""

    CA = "ca"
    SERVER = "server"
    CLIENT = "client"


_SUFFIXES = {
    Item.CA: ("ca-cert", "ca-key"),
    Item.SERVER: ("server-cert", "server-key"),
    Item.CLIENT: ("cert", "key"),
}


def rack_prefix(rack: str) -> str:
    """Lower-case hex of the UTF-8 rack name: the PhysicalResourceId and parameter prefix."""
    return rack.encode("utf-8").hex()


@dataclass(frozen=True)
class BundleNames:
    """The SSM parameter names of one rack's bundle."""

    prefix: str

    @classmethod
    def for_rack(cls, rack: str) -> BundleNames:
        return cls(rack_prefix(rack))

    def cert(self, item: Item) -> str:
        return f"{self.prefix}-docker-tls-{_SUFFIXES[item][0]}"

    def key(self, item: Item) -> str:
        return f"{self.prefix}-docker-tls-{_SUFFIXES[item][1]}"

    @property
    def version_track(self) -> str:
        """Written by the old convox handler; only ever removed here, when the rack's own
        resource adopts the bundle (handler.ownership). Not in :attr:`everything`: the owner
        parameter took its place in the one ten-name read."""
        return f"{self.prefix}-version-track"

    @property
    def next_ca_key(self) -> str:
        """A staged rotation's introduced CA key, until it signs."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[0]}"

    @property
    def previous_ca_key(self) -> str:
        """The switched-from CA's key, kept until the retire (a rollback of the switch needs it)."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[1]}"

    @property
    def previous_ca_cert(self) -> str:
        """The retired CA's certificate, until an ordinary update closes the rollback window."""
        return f"{self.prefix}-docker-tls-{_ROTATION_SUFFIXES[2]}"

    @property
    def owner(self) -> str:
        """Which resource owns the bundle (handler.ownership): the one whose Delete removes it."""
        return f"{self.prefix}-docker-tls-{OWNER_SUFFIX}"

    @property
    def material(self) -> tuple[str, ...]:
        """The six certificate and key parameters, CA first."""
        return tuple(name for item in Item for name in (self.cert(item), self.key(item)))

    @property
    def rotation(self) -> tuple[str, ...]:
        """The parameters only a staged CA rotation uses."""
        return (self.next_ca_key, self.previous_ca_key, self.previous_ca_cert)

    @property
    def everything(self) -> tuple[str, ...]:
        """Every parameter a read, or a Delete, concerns: ten, one GetParameters call. The
        owner parameter comes last: a Delete removes it after the rest. The legacy
        ``version-track`` is not among them (see :attr:`version_track`)."""
        return (*self.material, *self.rotation, self.owner)

    def is_key(self, name: str) -> bool:
        return name in {self.key(item) for item in Item}


_ROTATION_SUFFIXES = ("next-ca-key", "previous-ca-key", "previous-ca-cert")
OWNER_SUFFIX = "owner"

#: Suffixes of every parameter this project writes.
PARAMETER_SUFFIXES = tuple(
    f"-docker-tls-{s}"
    for s in (*(s for pair in _SUFFIXES.values() for s in pair), *_ROTATION_SUFFIXES, OWNER_SUFFIX)
)
