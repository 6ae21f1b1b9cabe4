"""How a request flows through ``handler/``: the modules an Update enters, call by call.

    .venv/bin/python scripts/flow.py [--verbose]

Creates a bundle in moto, then traces one Update of it (a healthy bundle, the common case) and
one that renews a leaf, through ``handler.app.lambda_handler``. A call *enters* a module when a
function of one ``handler`` module calls a function of another; it *returns* to a module when
that module was entered before, after the request had left it. Two counts: every call, and the
request's *path*: calls that do something (not a property read or a constructor of a value)
into a module that is not a vocabulary every layer uses (``names``, ``codec``,
``certificates``, ``model``, ``logs``).
The same script runs on any commit, so a before and after are measured alike.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
    AWS_DEFAULT_REGION="us-east-1",
    LOG_LEVEL="WARNING",
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
    os.environ.pop(_name, None)


#: Modules every layer reads from, like a vocabulary: calls into them are not the path.
VOCABULARY = frozenset({"names", "codec", "certificates", "model", "logs"})


@dataclass
class Flow:
    """The module entries of one traced request, in order."""

    entries: list[tuple[str, str, bool]] = field(default_factory=list)  # module, function, acts

    @staticmethod
    def _returns(modules: list[str]) -> int:
        seen: set[str] = set()
        count = 0
        for module in modules:
            count += module in seen
            seen.add(module)
        return count

    @property
    def path(self) -> list[str]:
        return [m for m, _, acts in self.entries if acts and m not in VOCABULARY]

    @property
    def decodes(self) -> list[str]:
        """The stored-value decodings, in order (``*_from_stored`` calls)."""
        return [f for m, f, _ in self.entries if f.endswith("_from_stored")]

    def summary(self) -> str:
        every = [m for m, _, _ in self.entries]
        return (
            f"{len(every)} module entries ({self._returns(every)} returns); path: "
            f"{len(self.path)} entries ({self._returns(self.path)} returns); "
            f"{len(self.decodes)} stored values decoded"
        )


def _module(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    name = frame.f_globals.get("__name__", "")
    return name if isinstance(name, str) and name.startswith("handler.") else None


def _is_property(frame: FrameType) -> bool:
    """Whether the frame runs a property's getter: reading a value, not an operation."""
    owner = frame.f_locals.get("self")
    for klass in type(owner).__mro__ if owner is not None else ():
        attribute = klass.__dict__.get(frame.f_code.co_name)
        if isinstance(attribute, property) and attribute.fget is not None:
            return getattr(attribute.fget, "__code__", None) is frame.f_code
    return False


@contextmanager
def traced() -> Iterator[Flow]:
    flow = Flow()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee, caller = _module(frame), _module(frame.f_back)
        if callee and caller and callee != caller:
            name = frame.f_code.co_name
            acts = not name.startswith("__") and not _is_property(frame)
            flow.entries.append((callee.removeprefix("handler."), name, acts))

    sys.setprofile(profile)
    try:
        yield flow
    finally:
        sys.setprofile(None)


def measure() -> dict[str, Flow]:
    import boto3
    from moto import mock_aws

    from devkit.events import LambdaContext, event
    from handler import GENERATOR, app
    from handler.names import BundleNames, Item
    from handler.store import ParameterStore

    properties = {"Rack": "flow", "KeyAlgorithm": "ECDSA-P256"}
    url = "https://cloudformation-custom-resource-response.example/r?X-Amz-Signature=s"
    flows: dict[str, Flow] = {}
    # The module's store and sender are borrowed for the measurement and given back: a test
    # process goes on using them.
    store, send = app.store, app.helper.send_response
    try:
        with mock_aws():
            client = boto3.client("ssm", region_name="us-east-1")
            app.store = ParameterStore(client)
            app.helper.send_response = lambda url, body: True  # type: ignore[method-assign]
            physical = BundleNames.for_rack("flow").prefix

            def update() -> dict[str, Any]:
                return event(
                    "Update",
                    GENERATOR,
                    "DockerTLS",
                    properties,
                    response_url=url,
                    physical_id=physical,
                    old_properties=properties,
                )

            create = event("Create", GENERATOR, "DockerTLS", properties, response_url=url)
            app.lambda_handler(create, LambdaContext())
            with traced() as flows["Update, healthy (reused)"]:
                app.lambda_handler(update(), LambdaContext())
            client.delete_parameter(Name=BundleNames.for_rack("flow").cert(Item.SERVER))
            with traced() as flows["Update, a leaf renewed"]:
                app.lambda_handler(update(), LambdaContext())
    finally:
        app.store = store
        app.helper.send_response = send  # type: ignore[method-assign]
    return flows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every entry")
    args = parser.parse_args(argv)
    for name, flow in measure().items():
        print(f"{name}: {flow.summary()}")
        if args.verbose:
            print("    path: " + " -> ".join(flow.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
