"""Stack operations on the engine, and what they leave behind: one face for ``make stack-local``
and ``tests/test_stack_engine.py``.

Every change goes through CloudFormation (CreateStack, UpdateStack, DeleteStack) and every reading
through the engine's public APIs: DescribeStacks/DescribeStackEvents for status, outputs and
reasons, SSM for the bundle and its parameter versions, EC2 DescribeLaunchTemplateVersions for
what an instance would be given. The function's own code is never called here; certificates are
parsed with ``cryptography`` directly, so a reading does not share the function's assumptions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devkit.stack_deploy import AMI_PARAMETER, EngineTemplate
from devkit.stack_engine import StackEngine

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_UPDATES = "No updates are to be performed"
# The CA line of the launch template's UserData: printf '%s' '<base64 PEM>' | base64 -d > …
_CA_LINE = re.compile(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d > /etc/ca\.pem")


class StackError(RuntimeError):
    """A stack operation did not finish, or a reading was impossible."""


@dataclass(frozen=True)
class Step:
    """One stack operation and what it left: the line ``make stack-local`` prints."""

    label: str
    stack: str
    status: str  # the stack's status when the operation settled
    seconds: float
    action: str = "-"  # the Action output
    fingerprint: str = ""  # the CAFingerprint output
    trusted: tuple[str, ...] = ()  # the TrustedCAFingerprints output, signer first
    written: tuple[str, ...] = ()  # parameters created or given a new version
    removed: tuple[str, ...] = ()  # parameters deleted
    reason: str = ""  # why it failed or was refused (the first failed resource's reason)

    def line(self) -> str:
        fingerprint = f"{self.fingerprint[:16]}…" if self.fingerprint else "-"
        changes = f"{len(self.written)} written, {len(self.removed)} removed"
        return (
            f"{self.label:<46} {self.seconds:5.1f} s  {self.status:<26} {self.action:<11} "
            f"{fingerprint:<18} {changes}"
        )


@dataclass
class Request:
    """One request the function received, as its own log lines in the stack's log group tell
    it (every line carries the request's type and resource; the generator logs its Action)."""

    request_id: str
    request_type: str
    logical_id: str
    action: str = ""


def certificate_fingerprints(pem: bytes) -> tuple[str, ...]:
    """SHA-256 fingerprints (hex) of the certificates in a PEM text, in order."""
    return tuple(c.fingerprint(hashes.SHA256()).hex() for c in x509.load_pem_x509_certificates(pem))


def stored_fingerprints(value: str) -> tuple[str, ...]:
    """The fingerprints of the certificates in a stored value (base64 of PEM)."""
    return certificate_fingerprints(base64.b64decode(value))


@dataclass
class Stacks:
    """Stacks of one template in one engine; remembers each stack's parameter values, so an
    update names only what changes."""

    engine: StackEngine
    template: EngineTemplate
    timeout: float = 300.0
    _parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    _cfn: Any = None
    _ssm: Any = None
    _ec2: Any = None
    _logs: Any = None

    def __post_init__(self) -> None:
        self._cfn = self.engine.client("cloudformation")
        self._ssm = self.engine.client("ssm")
        self._ec2 = self.engine.client("ec2")
        self._logs = self.engine.client("logs")

    # --- operations ---------------------------------------------------------------------------

    def create(self, label: str, stack: str, *, body: str | None = None, **parameters: str) -> Step:
        """CreateStack with the template's parameters plus ``parameters``; waits for it."""
        values = {**self.template.parameters, **parameters}
        self._parameters[stack] = values
        return self._operate(
            label,
            stack,
            lambda: self._cfn.create_stack(
                StackName=stack,
                TemplateBody=body or self.template.body,
                Parameters=_parameter_list(values),
                Capabilities=CAPABILITIES,
            ),
        )

    def update(self, label: str, stack: str, **parameters: str) -> Step:
        """UpdateStack with the stack's last values changed by ``parameters``; a refused update
        ("No updates are to be performed") is a step with the refusal as its reason."""
        values = {**self._parameters[stack], **parameters}
        step = self._operate(
            label,
            stack,
            lambda: self._cfn.update_stack(
                StackName=stack,
                TemplateBody=self.template.body,
                Parameters=_parameter_list(values),
                Capabilities=CAPABILITIES,
            ),
        )
        if step.status.endswith("_COMPLETE") and not step.status.endswith("ROLLBACK_COMPLETE"):
            self._parameters[stack] = values
        return step

    def delete(self, label: str, stack: str) -> Step:
        """DeleteStack; waits until the stack is gone."""
        stack_id = self.describe(stack)["StackId"]
        return self._operate(
            label, stack, lambda: self._cfn.delete_stack(StackName=stack), describe_as=stack_id
        )

    def _operate(
        self, label: str, stack: str, operation: Any, *, describe_as: str | None = None
    ) -> Step:
        before = self.parameter_versions()
        started = time.monotonic()
        since = time.time() - 1
        try:
            operation()
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", str(error))
            if NO_UPDATES not in message:
                raise
            status = self.describe(stack)["StackStatus"]
            return Step(label, stack, status, time.monotonic() - started, reason=message)
        description = self._wait(describe_as or stack)
        seconds = time.monotonic() - started
        after = self.parameter_versions()
        status = str(description["StackStatus"])
        # A deleted stack's last outputs say nothing about the delete.
        outputs = {} if status == "DELETE_COMPLETE" else _outputs(description)
        reason = "" if _succeeded(status) else self.failure_reason(describe_as or stack, since)
        return Step(
            label=label,
            stack=stack,
            status=status,
            seconds=seconds,
            action=outputs.get("Action", "-"),
            fingerprint=outputs.get("CAFingerprint", ""),
            trusted=tuple(f for f in outputs.get("TrustedCAFingerprints", "").split(",") if f),
            written=tuple(sorted(n for n, v in after.items() if before.get(n) != v)),
            removed=tuple(sorted(set(before) - set(after))),
            reason=reason,
        )

    def _wait(self, stack: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            description = self.describe(stack)
            if not str(description["StackStatus"]).endswith("_IN_PROGRESS"):
                return description
            time.sleep(0.2)
        raise StackError(f"stack {stack} did not settle in {self.timeout:.0f} s")

    # --- readings -----------------------------------------------------------------------------

    def describe(self, stack: str) -> dict[str, Any]:
        stacks = self._cfn.describe_stacks(StackName=stack)["Stacks"]
        return dict(stacks[0])

    def outputs(self, stack: str) -> dict[str, str]:
        return _outputs(self.describe(stack))

    def resource(self, stack: str, logical_id: str) -> dict[str, Any]:
        """One resource of the stack as CloudFormation records it (its PhysicalResourceId…)."""
        found = self._cfn.describe_stack_resource(StackName=stack, LogicalResourceId=logical_id)
        return dict(found["StackResourceDetail"])

    def events(self, stack: str) -> list[dict[str, Any]]:
        """The stack's events, newest first (as DescribeStackEvents gives them)."""
        return [dict(e) for e in self._cfn.describe_stack_events(StackName=stack)["StackEvents"]]

    def failure_reason(self, stack: str, since: float = 0.0) -> str:
        """The reason of the earliest resource failure since ``since`` (epoch seconds)."""
        failed = [
            e
            for e in self.events(stack)
            if str(e.get("ResourceStatus", "")).endswith("_FAILED")
            and e["Timestamp"].timestamp() >= since
            and e.get("LogicalResourceId") != stack
        ]
        if not failed:
            return str(self.describe(stack).get("StackStatusReason", ""))
        first = min(failed, key=lambda e: e["Timestamp"])
        return f"{first['LogicalResourceId']}: {first.get('ResourceStatusReason', '')}"

    def parameter_versions(self) -> dict[str, int]:
        """Every SSM parameter in the engine (but the seeded AMI) and its version."""
        versions: dict[str, int] = {}
        for page in self._ssm.get_paginator("describe_parameters").paginate():
            for parameter in page["Parameters"]:
                if parameter["Name"] != AMI_PARAMETER:
                    versions[parameter["Name"]] = int(parameter["Version"])
        return versions

    def bundle(self, prefix: str) -> dict[str, str]:
        """Every parameter whose name starts with ``prefix-`` (a rack's bundle), decrypted."""
        names = [n for n in self.parameter_versions() if n.startswith(f"{prefix}-")]
        values: dict[str, str] = {}
        for start in range(0, len(names), 10):
            found = self._ssm.get_parameters(Names=names[start : start + 10], WithDecryption=True)
            values.update({p["Name"]: p["Value"] for p in found["Parameters"]})
        return values

    def bundle_digests(self, prefix: str) -> dict[str, str]:
        """SHA-256 of each of the bundle's values: compares like :meth:`bundle` and is safe to
        print (an assertion's diff of the values would show private keys)."""
        return {name: _digest(value) for name, value in self.bundle(prefix).items()}

    def function_log(self, stack: str) -> list[str]:
        """Every line the stack's function wrote to its log group (``DockerTlsLogGroup``), in
        order: the engine delivers the Lambda's output to CloudWatch Logs as AWS does."""
        group = self.resource(stack, "DockerTlsLogGroup")["PhysicalResourceId"]
        lines: list[str] = []
        for page in self._logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            lines.extend(str(event["message"]) for event in page["events"])
        return lines

    def function_requests(self, stack: str) -> list[Request]:
        """The requests the function received, in order, from its log lines."""
        requests: dict[str, Request] = {}
        for line in self.function_log(stack):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the runtime's START/END/REPORT lines
            if not isinstance(record, dict) or "RequestId" not in record:
                continue
            request = requests.setdefault(
                str(record["RequestId"]),
                Request(
                    str(record["RequestId"]),
                    str(record.get("RequestType", "")),
                    str(record.get("LogicalResourceId", "")),
                ),
            )
            if isinstance(record.get("action"), str):
                request.action = record["action"]
        return list(requests.values())

    def user_data(self, stack: str) -> str:
        """The launch template's latest UserData, decoded: what an instance would run."""
        template_id = self.outputs(stack)["LaunchTemplateId"]
        versions = self._ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=["$Latest"]
        )["LaunchTemplateVersions"]
        encoded = versions[0]["LaunchTemplateData"]["UserData"]
        return base64.b64decode(encoded).decode("utf-8")

    def user_data_ca(self, stack: str) -> str:
        """The CA bundle (base64 PEM, as the getter returned it) that UserData installs."""
        match = _CA_LINE.search(self.user_data(stack))
        if match is None:
            raise StackError(f"stack {stack}: no /etc/ca.pem line in the launch template")
        return match.group(1)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def user_data_digest(user_data: str) -> str:
    """SHA-256 of a UserData text (it holds the server key: compare digests, never print it)."""
    return _digest(user_data)


def _parameter_list(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def _outputs(description: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: str(o["OutputValue"]) for o in description.get("Outputs", [])}


def _succeeded(status: str) -> bool:
    return status in {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE"}
