"""Reliability: simultaneous Creates/Updates for one Rack converge on one CA.

Each writer is its own process (as concurrent Lambda invocations are separate sandboxes), forked
after imports so it starts in milliseconds, with its own boto3 client talking HTTP to moto's
server on 127.0.0.1, and answers CloudFormation over HTTPS to a local receiver. All of them are
released at once by a barrier.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.events import LambdaContext, event
from devkit.receiver import Receiver, response_receiver
from handler import app
from handler.ensure import ensure
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.conftest import OWNER, props
from tests.reliability_support import (
    Record,
    assert_healthy,
    figure,
    http_client,
    shared_ssm,
    stored_values,
    versions,
)

# The fuzz, fault-matrix, concurrency and timing tests: the full run (make test) only.
pytestmark = pytest.mark.slow

WRITERS = 8
ROUNDS = 5
RACK = "concurrent"
NAMES = BundleNames.for_rack(RACK)
HEX = NAMES.prefix
PROPS = {"Rack": RACK, "Version": "7", "KeyAlgorithm": "ECDSA-P256"}
PARSED = props(RACK)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with response_receiver() as r:
        yield r


def _writer(barrier: Any, endpoint: str, body: dict[str, Any]) -> None:
    """A child process: one Lambda invocation."""
    code = 1
    try:
        os.environ["AWS_ENDPOINT_URL_SSM"] = endpoint
        store = ParameterStore()  # its own client, as a fresh sandbox would have
        # Real SSM answers in tens of milliseconds, moto in a few: without that latency the
        # windows between one writer's calls are too short for the races that matter.
        store.client.meta.events.register(
            "before-send.ssm.*", lambda **_: time.sleep(random.uniform(0.02, 0.06))
        )
        app.store = store
        barrier.wait(timeout=30)
        app.lambda_handler(body, LambdaContext(timeout_seconds=60))
        code = 0
    finally:
        os._exit(code)


def _round(receiver: Receiver, endpoint: str, start: str) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS)
    bodies = []
    for index in range(WRITERS):
        if index % 2 == 0:  # a Create and its Lambda retries
            body = event("Create", app.GENERATOR, "DockerTLS", PROPS, response_url=receiver.url())
        else:  # Updates of a stack that believes the resource exists
            body = event(
                "Update",
                app.GENERATOR,
                "DockerTLS",
                {**PROPS, "Version": str(index)},
                response_url=receiver.url(),
                physical_id=HEX,
                old_properties=PROPS,
            )
        bodies.append(body)
    children = [context.Process(target=_writer, args=(barrier, endpoint, body)) for body in bodies]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=90)
        assert child.exitcode == 0, f"a writer crashed ({start})"
    responses = []
    for body in bodies:
        received = receiver.responses(body["ResponseURL"])
        assert len(received) == 1, f"expected exactly one response, got {len(received)}"
        responses.append(received[0])
    return responses


@pytest.mark.parametrize("start", ["empty", "leaves-missing", "half-written-pairs"])
def test_simultaneous_writers_end_with_one_ca(
    receiver: Receiver, start: str, record_property: Record
) -> None:
    endpoint = shared_ssm()
    client = http_client(endpoint)
    actions: list[str] = []
    started = time.monotonic()
    for round_ in range(ROUNDS):
        endpoint.reset()
        before: dict[str, str] = {}
        if start != "empty":
            ensure(
                ParameterStore(client),
                PARSED,
                rotate=False,
                now=dt.datetime.now(dt.UTC),
                requester=OWNER,
            )
            gone = {
                # a server pair and a client key lost
                "leaves-missing": [NAMES.cert(Item.SERVER), NAMES.key(Item.SERVER)],
                # what a writer leaves between a leaf's key and its certificate
                "half-written-pairs": [NAMES.cert(Item.SERVER)],
            }[start]
            client.delete_parameters(Names=[*gone, NAMES.key(Item.CLIENT)])
            before = stored_values(client, NAMES)
        responses = _round(receiver, endpoint.endpoint, start)
        failed = [r["Reason"] for r in responses if r["Status"] != "SUCCESS"]
        assert not failed, f"round {round_}: {failed}"
        final = stored_values(client, NAMES)
        held = assert_healthy(final, PARSED, dt.datetime.now(dt.UTC))
        fingerprints = {r["Data"]["CAFingerprint"] for r in responses}
        assert fingerprints == {held}, f"round {round_}: {len(fingerprints)} CAs named"
        assert {r["PhysicalResourceId"] for r in responses} == {HEX}
        # One CA key was ever written (create-if-absent), never overwritten.
        assert versions(client, NAMES)[NAMES.key(Item.CA)] == 1
        if before:
            ca = (NAMES.key(Item.CA), NAMES.cert(Item.CA))
            assert {n: final[n] for n in ca} == {n: before[n] for n in ca}
        actions.extend(r["Data"]["Action"] for r in responses)
    figure(
        record_property,
        "concurrency",
        "one CA, named by every response",
        start=start,
        writers=WRITERS,
        rounds=ROUNDS,
        actions=sorted(set(actions)),
        seconds=round(time.monotonic() - started, 1),
    )
