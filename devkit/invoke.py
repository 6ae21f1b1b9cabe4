"""Run ``handler.app.lambda_handler`` on a CloudFormation event file, without Docker.

``python -m devkit.invoke events/update.json`` (``make invoke EVENT=events/update.json``):

* by default against the SSM endpoint ``AWS_ENDPOINT_URL_SSM`` names (the lasting local one:
  ``eval "$(make -s local-ssm)"``), else an embedded, throwaway one (moto's server on
  127.0.0.1, empty at start), with the event's ``ResponseURL`` replaced by a local HTTPS
  receiver's; prints the response CloudFormation would get. An Update, a Delete or a getter
  whose bundle is not there first gets a silent Create of it (``--no-seed`` skips that);
* with ``--aws`` against real AWS (standard credential chain and region). The response still
  goes to a local receiver unless ``--send`` also asks to PUT it to the event's ``ResponseURL``.

The response is printed as JSON on stdout, notes and the handler's logs go to stderr. Private
keys are never printed: when the response sets ``NoEcho``, every ``Data`` value is masked, as
CloudFormation masks it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from devkit.events import LambdaContext
from devkit.receiver import Receiver, response_receiver
from docker_tls_cli import calm
from handler import GENERATOR, GETTER

MASK = "*****"  # what CloudFormation shows for a NoEcho value

EXIT_SUCCESS, EXIT_FAILED, EXIT_USAGE, EXIT_CREDENTIALS = 0, 1, 2, 4
EXIT_UNREACHABLE = calm.EXIT_UNREACHABLE

#: What to run when the configured local endpoint does not answer.
_LOCAL_HINT = (
    f"{calm.LOCAL_ENDPOINT_HINT}, or unset AWS_ENDPOINT_URL_SSM for a throwaway embedded one"
)

_REQUIRED = ("RequestType", "ResourceType", "ResourceProperties")


class InvokeError(Exception):
    """The invocation could not run; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_event(path: Path) -> dict[str, Any]:
    """A CloudFormation request from a JSON file, with the fields the handler needs."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvokeError(f"cannot read event {path}: {error}", EXIT_USAGE) from None
    if not isinstance(body, dict):
        raise InvokeError(f"event {path} is not a JSON object", EXIT_USAGE)
    missing = [key for key in _REQUIRED if key not in body]
    if missing:
        raise InvokeError(f"event {path} lacks {', '.join(missing)}", EXIT_USAGE)
    return body


def seed_properties(event: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The generator properties a stack would have created before ``event`` could happen, and
    where they come from; None when the event needs nothing stored first (a generator Create,
    a getter's Delete, an unknown type)."""
    resource_type, request_type = event.get("ResourceType"), event.get("RequestType")
    properties = dict(event.get("ResourceProperties") or {})
    if resource_type == GENERATOR and request_type == "Update":
        old = event.get("OldResourceProperties")
        if old:
            return dict(old), "OldResourceProperties"
        return properties, "ResourceProperties"
    if resource_type == GENERATOR and request_type == "Delete":
        return properties, "ResourceProperties"
    if resource_type == GETTER and request_type in ("Create", "Update") and "Rack" in properties:
        generator = {"Rack": properties["Rack"]}
        if "ServiceToken" in properties:
            generator["ServiceToken"] = properties["ServiceToken"]
        return generator, "the getter's Rack, default properties"
    return None


def _looks_like_private_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        text = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        text = value.encode("utf-8", "replace")
    return b"PRIVATE KEY" in text


def masked(response: Mapping[str, Any]) -> dict[str, Any]:
    """``response`` safe to print: with ``NoEcho`` every Data value is masked, and a value that
    holds a private key is masked whatever ``NoEcho`` says."""
    shown = dict(response)
    data = response.get("Data") or {}
    if isinstance(data, Mapping):
        no_echo = bool(response.get("NoEcho"))
        shown["Data"] = {
            key: MASK if no_echo or _looks_like_private_key(value) else value
            for key, value in data.items()
        }
    return shown


@contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


@contextmanager
def _store_from_environment() -> Iterator[None]:
    """Point the handler at an SSM client made from the current environment (the embedded
    endpoint or real AWS), not one an earlier run in this process created."""
    from handler import app
    from handler.store import ParameterStore

    saved = app.store
    app.store = ParameterStore()
    try:
        yield
    finally:
        app.store = saved


def _check_aws() -> str:
    import boto3

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise InvokeError(
            "no AWS credentials found in the standard chain (environment, AWS_PROFILE and "
            "~/.aws, SSO, container or instance role): configure them or drop --aws",
            EXIT_CREDENTIALS,
        )
    if not session.region_name:
        raise InvokeError(
            "no AWS region: set AWS_DEFAULT_REGION (or a profile's region) or drop --aws",
            EXIT_CREDENTIALS,
        )
    return f"region {session.region_name}, credentials from {credentials.method}"


def _call(event: Mapping[str, Any]) -> None:
    from handler import app

    app.lambda_handler(event, LambdaContext())


def _via_receiver(receiver: Receiver, event: Mapping[str, Any]) -> dict[str, Any]:
    body = {**event, "ResponseURL": receiver.url()}
    _call(body)
    responses = receiver.responses(body["ResponseURL"])
    if len(responses) != 1:
        raise InvokeError(
            f"the handler sent {len(responses)} responses; CloudFormation expects exactly one",
            EXIT_FAILED,
        )
    return responses[0]


def _via_event_url(event: Mapping[str, Any], note: TextIO) -> dict[str, Any]:
    """Run with the event's own ResponseURL, recording what the handler PUT there."""
    from handler import app

    sent: list[dict[str, Any]] = []
    original = app.helper.send_response

    def record(url: str, body: Mapping[str, Any]) -> bool:
        sent.append(dict(body))
        delivered = original(url, body)
        print(f"invoke: response {'delivered' if delivered else 'NOT delivered'}", file=note)
        return delivered

    own = vars(app.helper)
    saved = own.get("send_response")
    app.helper.send_response = record  # type: ignore[method-assign]
    try:
        _call(event)
    finally:
        if saved is None:
            del own["send_response"]  # back to the class's method
        else:
            own["send_response"] = saved
    if len(sent) != 1:
        raise InvokeError(f"the handler sent {len(sent)} responses, not one", EXIT_FAILED)
    return sent[0]


def _seed(receiver: Receiver, event: Mapping[str, Any], note: TextIO) -> None:
    from handler.names import BundleNames
    from handler.properties import PropertyError, parse_rack
    from handler.store import ParameterStore, StoreError

    found = seed_properties(event)
    if found is None:
        return
    properties, origin = found
    try:
        rack = parse_rack(properties)
    except PropertyError:
        return  # the event itself is bad; let the handler say so
    try:
        stored = ParameterStore().read(BundleNames.for_rack(rack).material)
    except StoreError as error:
        raise _unanswered(error) from None
    if stored:
        return
    create = {
        **event,
        "RequestType": "Create",
        "ResourceType": GENERATOR,
        # The generator's own logical id, so that the seeded bundle is its to update and
        # delete (a bundle's owner is a StackId and a LogicalResourceId).
        "LogicalResourceId": event.get("LogicalResourceId")
        if event.get("ResourceType") == GENERATOR
        else "DockerTLS",
        "ResourceProperties": properties,
    }
    create.pop("PhysicalResourceId", None)
    create.pop("OldResourceProperties", None)
    with _quiet():
        response = _via_receiver(receiver, create)
    if response.get("Status") != "SUCCESS":
        raise InvokeError(
            f"seeding the embedded SSM failed: {response.get('Reason')}; try --no-seed",
            EXIT_FAILED,
        )
    print(
        f"invoke: seeded: the endpoint held no bundle for Rack {rack!r}, so a Create "
        f"(from {origin}) ran first; its response is not shown. --no-seed skips this.",
        file=note,
    )


def _unanswered(error: Exception) -> InvokeError:
    """A failed SSM read before the handler ran, as one line (naming the endpoint and what to
    run when it never answered)."""
    code = getattr(error, "code", type(error).__name__)
    line = calm.unreachable(code, os.environ.get("AWS_ENDPOINT_URL_SSM"), _LOCAL_HINT)
    if line is not None:
        return InvokeError(line, EXIT_UNREACHABLE)
    return InvokeError(f"reading the bundle before the event failed: {error}", EXIT_FAILED)


def _probe(endpoint: str, note: TextIO) -> None:
    """One read with the terminal's short waits before the handler's long ones: an endpoint
    that refuses or never answers is one line here, within seconds, for every event type
    (the handler's own client would retry for a minute, then blame the role's permissions)."""
    from botocore.exceptions import BotoCoreError

    from handler.store import ParameterStore, StoreError

    def say(text: str) -> None:
        print(f"invoke: {text}", file=note, flush=True)

    try:
        ParameterStore(calm.ssm_client(say)).read(["docker-tls-invoke-probe"])
    except StoreError as error:
        if calm.unreachable(error.code, endpoint) is not None:
            raise _unanswered(error) from None
    except BotoCoreError:
        pass  # no region and the like: the handler reports it in its own words


def explain(response: Mapping[str, Any]) -> str | None:
    """A note for a FAILED response whose Reason is an SSM endpoint that never answered: which
    endpoint that was, and what to run to have a local one (the handler cannot know)."""
    reason = str(response.get("Reason") or "")
    if response.get("Status") != "FAILED":
        return None
    for code in calm.NO_ANSWER:
        if f"({code})" in reason:
            return calm.unreachable(code, os.environ.get("AWS_ENDPOINT_URL_SSM"), _LOCAL_HINT)
    return None


def run(
    event: Mapping[str, Any],
    *,
    aws: bool = False,
    send: bool = False,
    seed: bool = True,
    note: TextIO | None = None,
) -> dict[str, Any]:
    """Invoke the handler on ``event`` and return the one response it sent (unmasked)."""
    note = note or sys.stderr
    if send and not aws:
        raise InvokeError(
            "--send needs --aws: a local run must not answer a real stack", EXIT_USAGE
        )
    configured = os.environ.get("AWS_ENDPOINT_URL_SSM")
    local: AbstractContextManager[Any]
    if aws:
        if configured:
            raise InvokeError(
                f"--aws, but AWS_ENDPOINT_URL_SSM={configured} would send SSM calls there: "
                "unset it (and the local endpoint's fake credentials) to reach AWS",
                EXIT_USAGE,
            )
        print(f"invoke: real AWS ({_check_aws()})", file=note)
        local = nullcontext()
    elif configured:
        _probe(configured, note)
        local = nullcontext()
    else:
        from devkit.ssm_server import local_ssm

        local = local_ssm()
    with local as endpoint, response_receiver() as receiver, _store_from_environment():
        if endpoint is not None:
            endpoint.reset()  # moto keeps state per process: an earlier run's must not leak in
            print(
                f"invoke: embedded SSM endpoint {endpoint.endpoint}, throwaway: it starts empty "
                'and is gone when this command ends (eval "$(make -s local-ssm)" gives one '
                "that lasts); the ResponseURL is replaced by a local HTTPS receiver's",
                file=note,
            )
        elif configured:
            print(
                f"invoke: SSM endpoint {configured} (AWS_ENDPOINT_URL_SSM); the ResponseURL is "
                "replaced by a local HTTPS receiver's",
                file=note,
            )
        if not aws and seed:
            _seed(receiver, event, note)
        if send:
            print("invoke: the response goes to the event's ResponseURL", file=note)
            return _via_event_url(event, note)
        if aws:
            print(
                "invoke: the response goes to a local receiver (--send for the real URL)", file=note
            )
        return _via_receiver(receiver, event)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.invoke",
        description="Run the docker-tls Lambda handler on a CloudFormation event file, "
        "without Docker, and print the response CloudFormation would get.",
    )
    parser.add_argument("event", type=Path, help="event JSON, e.g. events/update.json")
    parser.add_argument(
        "--aws",
        action="store_true",
        help="use real AWS (standard credential chain and region) instead of the embedded SSM",
    )
    parser.add_argument(
        "--send",
        action="store_true",
        help="with --aws: PUT the response to the event's ResponseURL (a real, waiting stack)",
    )
    parser.add_argument(
        "--no-seed",
        dest="seed",
        action="store_false",
        help="do not create the bundle first for an Update, Delete or getter event",
    )
    args = parser.parse_args(argv)
    chosen_out = out or sys.stdout
    return calm.calmly("invoke", lambda: _main(args, chosen_out, err or sys.stderr), chosen_out)


def _main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        event = load_event(args.event)
        response = run(event, aws=args.aws, send=args.send, seed=args.seed, note=err)
    except InvokeError as error:
        print(f"invoke: {error}", file=err)
        return error.exit_code
    if response.get("NoEcho"):
        print("invoke: NoEcho is true: Data values are masked", file=err)
    unanswered = explain(response)
    if unanswered is not None:
        print(
            f"invoke: the Reason's advice to check the role's permissions does not apply: "
            f"{unanswered}",
            file=err,
        )
    print(json.dumps(masked(response), indent=2), file=out)
    return EXIT_SUCCESS if response.get("Status") == "SUCCESS" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
