"""Runs inside the emulated arm64 Python (:mod:`devkit.arm64_lifecycle` starts it): the built
artifact's ``handler.app.lambda_handler``, entered as the Lambda runtime enters it, for each
CloudFormation event the host sends, all in one interpreter (imports alone take about a minute
under emulation, so one process serves every step, as one warm Lambda container would).

    python3.13 -B -I -S arm64_driver.py ARTIFACT RUNTIME DEVKIT_ROOT

``sys.path`` is what Lambda's is: the artifact (``/var/task``) first, then the runtime's boto3
(``/var/runtime``); nothing else until ``handler.app`` is imported, so every module it needs
comes from the artifact or the runtime. Then ``DEVKIT_ROOT`` is appended for
:class:`devkit.events.LambdaContext`.

Protocol: one JSON object per line. In (stdin): ``{"step": NAME, "event": {...}}``. Out (the
original stdout; the function's own log lines go to stderr): ``{"step": "import", ...facts}``
once, then ``{"step": NAME, "seconds": S}`` per event, ``"error"`` added when something raised.
The verdict on each step is the host's, from the response it received and SSM's state.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, TextIO


def _say(out: TextIO, **fields: Any) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def main() -> int:
    artifact, runtime, devkit_root = sys.argv[1:4]
    # The protocol keeps the real stdout; everything the function prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path[:0] = [artifact, runtime]
    started = time.monotonic()
    try:
        import cryptography
        from cryptography.hazmat.backends.openssl import backend

        import handler.app
    except Exception as error:  # an ImportError is the answer, not a crash of the driver
        _say(
            out,
            step="import",
            seconds=time.monotonic() - started,
            machine=platform.machine(),
            error=f"{type(error).__name__}: {error}",
        )
        return 3
    _say(
        out,
        step="import",
        seconds=time.monotonic() - started,
        machine=platform.machine(),
        python=platform.python_version(),
        handler=handler.app.__file__,
        cryptography=cryptography.__file__,
        cryptography_version=cryptography.__version__,
        openssl=backend.openssl_version_text(),
    )
    sys.path.append(devkit_root)
    from devkit.events import LambdaContext

    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        try:
            handler.app.lambda_handler(request["event"], LambdaContext())
        except Exception as error:  # the host reports it; the next step may still run
            _say(
                out,
                step=request["step"],
                seconds=time.monotonic() - started,
                error=f"{type(error).__name__}: {error}",
            )
            continue
        _say(out, step=request["step"], seconds=time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
