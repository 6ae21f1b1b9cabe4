"""What a Docker host and a client install from a rack's bundle, read back from SSM as PEM."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from handler.names import BundleNames, Item


@dataclass(frozen=True)
class Material:
    """``ca.pem`` (every trusted CA), the daemons' certificate and key, the client's."""

    label: str
    ca: bytes
    server_cert: bytes
    server_key: bytes = field(repr=False)
    client_cert: bytes
    client_key: bytes = field(repr=False)


def read_material(client: Any, names: BundleNames, label: str = "") -> Material:
    """The six parameters as an instance's user data decodes them (``base64 -d``)."""
    found = client.get_parameters(Names=list(names.material), WithDecryption=True)
    values = {p["Name"]: base64.b64decode(p["Value"]) for p in found["Parameters"]}
    return Material(
        label,
        values[names.cert(Item.CA)],
        values[names.cert(Item.SERVER)],
        values[names.key(Item.SERVER)],
        values[names.cert(Item.CLIENT)],
        values[names.key(Item.CLIENT)],
    )
