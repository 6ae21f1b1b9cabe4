"""Run the SAM CLI with its Lambda containers on the host's network: ``python THIS sam-args``.

Run by the SAM CLI's own interpreter (its virtualenv has docker-py and samcli), not the
project's. Why it exists: the function must reach a local SSM endpoint and a CloudFormation
response receiver on 127.0.0.1, and SAM must reach the container's runtime interface emulator.
SAM publishes the emulator's port from the engine's default bridge network, which a daemon
started with ``--bridge=none`` does not have, and ``--docker-network host`` is accepted but not
applied (aws/aws-sam-cli#4236: SAM skips connecting to "host" and the container stays on the
default network). So every Lambda container SAM creates is created with ``network_mode=host``
instead, with the emulator listening on the loopback port SAM chose and the runtime API on a
free one (two containers on the host's network must not share the emulator's default 9001).

``DOCKER_TLS_SAM_CA_DIR``, when set, is a host directory mounted read-only at
:data:`CA_MOUNT` in each Lambda container: the local receiver's CA, so the function's response
travels over verified HTTPS as it does to S3.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from docker.models.containers import ContainerCollection

#: Where the receiver's CA directory appears inside the container.
CA_MOUNT = "/var/docker-tls-ca"
#: SAM's name for the emulator's port inside the container (container.py RAPID_PORT_CONTAINER).
EMULATOR_PORT = "8080"

_create = ContainerCollection.create


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _create_on_host_network(
    self: ContainerCollection, image: str, command: Any = None, **kwargs: Any
) -> Any:
    ports = kwargs.get("ports") or {}
    published = ports.get(EMULATOR_PORT)
    if published is None:  # not a Lambda container (e.g. a build container): as SAM asked
        return _create(self, image, command, **kwargs)
    interface, port = published
    kwargs.pop("ports")
    kwargs["network_mode"] = "host"
    kwargs["entrypoint"] = [
        *(kwargs.get("entrypoint") or []),
        "--runtime-interface-emulator-address",
        f"{interface}:{port}",
        "--runtime-api-address",
        f"127.0.0.1:{_free_loopback_port()}",
    ]
    ca_dir = os.environ.get("DOCKER_TLS_SAM_CA_DIR")
    if ca_dir:
        volumes = dict(kwargs.get("volumes") or {})
        volumes[ca_dir] = {"bind": CA_MOUNT, "mode": "ro"}
        kwargs["volumes"] = volumes
    return _create(self, image, command, **kwargs)


def main() -> None:
    ContainerCollection.create = _create_on_host_network
    from samcli.cli.main import cli

    sys.argv[0] = "sam"
    cli()


if __name__ == "__main__":
    main()
