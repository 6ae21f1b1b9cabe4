"""The in-process harness: ``lambda_handler`` against moto's SSM, with fake AWS credentials.

Every in-process measure (SSM calls, Update-reuse and Create latency) drives the handler as
shipped through :class:`Harness`: it only wraps functions from the outside (:class:`Timers`, to
split a request's time into parse, verify, key generation and SSM), counts the SSM calls at
botocore's ``before-call`` and replaces the CloudFormation response sender.

Importing this module sets the process up before boto3 or the handler are loaded: fake
credentials and a region, so that nothing reaches a real account (the fresh interpreters of
the cold-start and memory measures inherit them), and a root log handler that writes to
/dev/null, so the handler's INFO logging (formatting, redaction) is part of its cost while the
terminal is not. :func:`subprocess_env` hands that environment to the fresh interpreters.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from report import ROOT

ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")
RESPONSE_URL = "https://cloudformation-custom-resource-response.example/r?X-Amz-Signature=s"


def _fake_aws_env() -> None:
    """Fake credentials and a region: nothing here may reach a real account."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        os.environ.pop(key, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        LOG_LEVEL="INFO",
    )


def subprocess_env(pycache: Path | None, write_bytecode: bool, path: Path = ROOT) -> dict[str, str]:
    """This process's environment (fake AWS included) for a fresh interpreter that imports
    from ``path``: bytecode cached under ``pycache``, or not written at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(path)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_fake_aws_env()
sys.path.insert(0, str(ROOT))
# The handler logs at INFO as in Lambda; formatting and redaction are part of its cost, the
# terminal is not: the root handler writes to /dev/null (handler.logs.setup formats it).
logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from devkit.events import LambdaContext, event  # noqa: E402
from handler import GENERATOR, app, certificates, ensure  # noqa: E402
from handler.store import ParameterStore  # noqa: E402
from handler.stored import StoredBundle  # noqa: E402

__all__ = ["ALGORITHMS", "Harness", "Timers", "mock_aws", "new_rack", "subprocess_env"]


class Timers:
    """Accumulated wall time per label, for functions wrapped from the outside."""

    def __init__(self) -> None:
        self.spent: defaultdict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.spent.clear()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - start

        setattr(owner, name, timed)


class Harness:
    """lambda_handler against one in-memory moto SSM, responses captured, calls counted."""

    def __init__(self) -> None:
        self.client = boto3.client("ssm", region_name="us-east-1")
        self.calls: Counter[str] = Counter()
        self.client.meta.events.register("before-call.ssm", self._count)
        self.store = ParameterStore(self.client, sleep=lambda _: None)
        self.timers = Timers()
        self.sent: list[Any] = []
        app.store = self.store
        app.helper.send_response = self._record  # type: ignore[method-assign]
        t = self.timers
        t.wrap(self.store, "read", "ssm")
        t.wrap(self.store, "put", "ssm")
        t.wrap(self.store, "delete", "ssm")
        t.wrap(ensure, "plan", "plan")
        t.wrap(ensure, "issue", "issue")
        # Every stored value is decoded in StoredBundle.decode, once, before plan() decides.
        t.wrap(StoredBundle, "decode", "parse")
        t.wrap(certificates.KeyAlgorithm, "generate", "keygen")

    def _record(self, url: str, body: Any) -> bool:
        self.sent.append(body)
        return True

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def invoke(
        self,
        request_type: str,
        properties: dict[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: dict[str, Any] | None = None,
        resource_type: str = GENERATOR,
    ) -> tuple[dict[str, Any], float]:
        body = event(
            request_type,
            resource_type,
            "DockerTLS",
            properties,
            response_url=RESPONSE_URL,
            physical_id=physical_id,
            old_properties=old_properties,
        )
        self.sent.clear()
        self.calls.clear()
        self.timers.reset()
        context = LambdaContext()
        start = time.perf_counter()
        app.lambda_handler(body, context)
        elapsed = time.perf_counter() - start
        if len(self.sent) != 1 or self.sent[0]["Status"] != "SUCCESS":
            raise RuntimeError(f"{request_type} did not succeed: {self.sent}")
        return self.sent[0], elapsed


_racks = iter(range(1_000_000))


def new_rack() -> str:
    return f"bench-{os.getpid()}-{next(_racks)}"
