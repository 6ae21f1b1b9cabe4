"""``docker-tls``: what an operator asks of a rack's bundle, answered by the Lambda's own code.

* ``plan``: what a Create/Update would do right now, per item (``bundle.plan``), writing nothing;
* ``inspect``: every stored parameter's certificate facts, type, tier and each item's health;
* ``export``: the client (or ``--server``) credentials as PEM files for ``docker --tlsverify``,
  and (``--env-only``) the environment for files already exported.
* ``verify``: whether held files (an exported directory, a daemon's) are current for the stage.

Reads go through :class:`handler.store.ParameterStore` (one ``GetParameters`` call, decrypted),
decisions through :func:`handler.bundle.plan`, properties through
:func:`handler.properties.parse_generator`: there is no second copy of any rule here. Nothing
in SSM is ever written. Key material is printed nowhere; ``export`` writes it to files only.

Exit codes: 0 done, 1 other failure, 2 bad usage or ``--property``, 3 no such rack (nothing
stored), 4 no usable AWS credentials or region, 5 access denied, 6 the SSM endpoint refused or
never answered, 7 (``verify``) files to refresh, 130 Ctrl-C, 141 the reader closed the pipe
(:mod:`docker_tls_cli.calm`).
"""

from docker_tls_cli.common import (
    EXIT_ACCESS_DENIED,
    EXIT_CREDENTIALS,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from docker_tls_cli.main import main

__all__ = [
    "EXIT_ACCESS_DENIED",
    "EXIT_CREDENTIALS",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]
