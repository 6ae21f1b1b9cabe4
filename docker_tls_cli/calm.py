"""How every operator-facing command ends: never with a traceback.

One place for what ``docker-tls``, ``python -m devkit.invoke`` (``make invoke``) and
``python -m devkit.local_endpoint`` (``make local-ssm``, ``make local-ssm-stop``) share:

* :func:`calmly` runs a command's body: a reader that closed the pipe early
  (``docker-tls inspect | head -1``) ends it quietly with 141, as a shell reports a process
  that SIGPIPE ended; Ctrl-C ends it with 130 and one line on stderr;
* :func:`ssm_client` is the SSM client for a person waiting at a terminal: short connect and
  read timeouts, bounded retries, and a line on stderr before each retry of a wait that
  timed out, so a socket that accepts and never answers is reported within seconds;
* :func:`unreachable` turns an SSM call that never got an answer into one line naming the
  endpoint and what to run.

The Lambda's own client (:func:`handler.store.default_client`) keeps its longer waits: there
nobody watches a terminal, and the request has minutes to answer.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

EXIT_UNREACHABLE = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cmd | head -1`'s cmd

CONNECT_TIMEOUT = 2  # seconds; a loopback or regional endpoint connects in milliseconds
READ_TIMEOUT = 3  # seconds; a GetParameters of ten SecureStrings answers well under one
ATTEMPTS = 3  # the first try and two retries: at most about 3 x 3 s + 3 s of back-off

#: botocore's names for "the endpoint never answered", with what each means for an operator.
NO_ANSWER = {
    "EndpointConnectionError": "refuses connections (or cannot be reached)",
    "ConnectTimeoutError": f"did not accept a connection within {CONNECT_TIMEOUT} s",
    "ReadTimeoutError": f"accepted the connection but did not answer within {READ_TIMEOUT} s",
    "ConnectionClosedError": "closed the connection without answering",
}

LOCAL_ENDPOINT_HINT = (
    'start the local endpoint and point this shell at it: eval "$(make -s local-ssm)"'
)


def calmly(prog: str, body: Callable[[], int], out: TextIO | None = None) -> int:
    """Run ``body`` (a command's work, returning its exit code); a closed pipe or Ctrl-C ends
    it with the conventional exit code instead of a traceback. ``out`` is flushed inside, so
    that a closed pipe is noticed here rather than when the interpreter exits."""
    out = out or sys.stdout
    try:
        code = body()
        out.flush()
    except BrokenPipeError:
        if not _reader_gone(out):
            raise  # a socket's broken pipe, not stdout's: a fault to see, not a reader's choice
        _forget_stdout(out)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    return code


def say(prog: str, text: str) -> None:
    """One line on stderr; a stderr that is itself gone is not worth a traceback."""
    with suppress(OSError, ValueError):
        print(f"{prog}: {text}", file=sys.stderr, flush=True)


def _reader_gone(out: TextIO) -> bool:
    """Whether ``out`` is a pipe or socket whose reader has gone (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(out.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # no descriptor to ask (already closed): the pipe it was is gone


def _forget_stdout(out: TextIO) -> None:
    # What is left in the buffer can never be delivered: point the descriptor at /dev/null,
    # or the interpreter's last flush prints "Exception ignored ... BrokenPipeError".
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def unreachable(
    code: str, endpoint: str | None, local_hint: str = LOCAL_ENDPOINT_HINT
) -> str | None:
    """One line for an SSM call that got no answer (``code`` is botocore's error name), naming
    the endpoint and what to run; None for every other failure."""
    what = NO_ANSWER.get(code)
    if what is None:
        return None
    where = endpoint or "the SSM endpoint"
    if endpoint and is_loopback(endpoint):
        return f"the SSM endpoint {where} {what}: {local_hint}"
    return (
        f"the SSM endpoint {where} {what}: check the network, the region (AWS_DEFAULT_REGION) "
        "and that AWS_ENDPOINT_URL_SSM is unset unless you mean a local endpoint"
    )


def ssm_client(note: Callable[[str], None]) -> SSMClient:
    """An SSM client from the standard chain and region for someone at a terminal: waits are
    short and bounded, and ``note`` hears a line before each retry of a timed-out wait."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    client = boto3.client("ssm", config=config)
    endpoint = client.meta.endpoint_url

    def before_retry(attempts: int, caught_exception: Exception | None = None, **_: Any) -> None:
        # Called after every attempt; botocore decides whether to retry. A wait that timed
        # out is retried while attempts remain, and that is the silence worth breaking.
        name = type(caught_exception).__name__
        if caught_exception is not None and name in NO_ANSWER and attempts < ATTEMPTS:
            if name == "EndpointConnectionError":
                return  # refused: over in milliseconds, the final line says it all
            note(
                f"the SSM endpoint {endpoint} {NO_ANSWER[name]}; retrying "
                f"(attempt {attempts + 1} of {ATTEMPTS})"
            )

    client.meta.events.register("needs-retry.ssm", before_retry)
    return client
