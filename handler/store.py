"""SSM Parameter Store access for the bundle: one batch read, typed writes, batch deletes.

The one rule that matters: "parameter not found" is the only error that means "absent".
Every other failure (access denied, KMS, throttling past botocore's retries, timeouts) raises
:class:`StoreError`, so the caller fails the request instead of regenerating a CA it merely
could not read.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .logs import redact

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

log = logging.getLogger(__name__)

STANDARD_LIMIT = 4096  # characters in a Standard-tier value
ADVANCED_LIMIT = 8192  # characters in an Advanced-tier value (moto does not enforce either)
GET_PARAMETERS_BATCH = 10  # GetParameters and DeleteParameters take at most 10 names
TOO_MANY_UPDATES_ATTEMPTS = 5  # botocore does not retry TooManyUpdates; we do, bounded


class StoreError(Exception):
    """SSM refused or failed a call; ``code`` is the AWS error code when there is one."""

    def __init__(self, operation: str, code: str, detail: str) -> None:
        super().__init__(f"SSM {operation} failed ({code}): {detail}")
        self.operation = operation
        self.code = code


class ParameterConflict(StoreError):
    """A create-if-absent write found the parameter already there (a concurrent writer)."""


class Stopped(RuntimeError):
    """The caller withdrew (it already answered, e.g. at the Lambda deadline): write no more."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Parameter:
    """A stored value with the metadata a read returns."""

    name: str
    value: str
    type: str
    version: int


def default_client() -> SSMClient:
    """An SSM client with bounded, standard-mode retries and short timeouts.

    Standard mode retries throttling and 5xx with backoff; the timeouts keep a hung
    connection from eating the Lambda's time, so the request can still answer FAILED.
    ``AWS_ENDPOINT_URL_SSM`` points it at a local endpoint for tests and the demo.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=15,
    )
    return boto3.client("ssm", config=config)


def _error(operation: str, error: Exception) -> StoreError:
    # The detail becomes a CloudFormation Reason and a log line: a service message that
    # echoes the request (a validation error quoting the value) must not carry a key out.
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return StoreError(operation, info.get("Code", "Unknown"), redact(info.get("Message", "")))
    return StoreError(operation, type(error).__name__, redact(str(error)))


def _is_tier_refusal(error: ClientError) -> bool:
    """Whether SSM refused a Standard-tier write because of the tier: the parameter is Advanced
    and cannot go back ("...advanced-parameter tier..."), or the value is over the Standard
    limit ("Standard tier parameters support a maximum parameter value of 4096 characters")."""
    message = str(error.response.get("Error", {}).get("Message", "")).lower()
    return "tier" in message and ("advanced" in message or "standard" in message)


class ParameterStore:
    """The bundle's view of SSM Parameter Store."""

    def __init__(
        self, client: SSMClient | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._sleep = sleep

    @property
    def client(self) -> SSMClient:
        # Created on first use: a getter's Delete, which reads nothing, never pays for it.
        if self._client is None:
            self._client = default_client()
        return self._client

    def read(self, names: Sequence[str]) -> dict[str, Parameter]:
        """The named parameters that exist, decrypted; absent names are simply missing."""
        found: dict[str, Parameter] = {}
        for start in range(0, len(names), GET_PARAMETERS_BATCH):
            batch = list(names[start : start + GET_PARAMETERS_BATCH])
            try:
                response = self.client.get_parameters(Names=batch, WithDecryption=True)
            except (ClientError, BotoCoreError) as error:
                raise _error("GetParameters", error) from error
            for item in response.get("Parameters", []):
                found[item["Name"]] = Parameter(
                    item["Name"], item["Value"], item["Type"], int(item["Version"])
                )
        return found

    def put(
        self,
        name: str,
        value: str,
        *,
        secure: bool,
        kms_key_id: str | None,
        overwrite: bool,
        stored_type: str | None = None,
        should_stop: Callable[[], bool] = _never,
    ) -> int:
        """Store ``value``; create-if-absent unless ``overwrite``. Returns the new version.

        ``stored_type`` is the type the parameter has now (from the read that decided this
        write). SSM refuses to change a parameter's type on overwrite
        (HierarchyTypeMismatchException: "you can't change a parameter from a String type to a
        SecureString type"), and the convox handler stored its keys as ``String``: such a
        parameter is deleted and created anew as the type asked for. Callers only rewrite a
        key whose value is held elsewhere or is being replaced on purpose (a staged switch
        moves the old CA key to ``previous-ca-key`` first), so a crash between the two calls
        loses nothing that the next request cannot rebuild from what is stored.

        ``should_stop`` is asked before every attempt: once it says yes (the request was
        already answered), :class:`Stopped` is raised instead of writing.
        """
        if len(value) > ADVANCED_LIMIT:
            raise StoreError("PutParameter", "ValueTooLarge", f"{name} exceeds {ADVANCED_LIMIT}")
        wanted_type = "SecureString" if secure else "String"
        if overwrite and stored_type is not None and stored_type != wanted_type:
            log.info(
                "parameter changes type: removed and written anew (SSM keeps a type for life)",
                extra={"parameter": name, "from": stored_type, "to": wanted_type},
            )
            self.delete([name], should_stop=should_stop)
            overwrite = False  # created anew: a concurrent writer's value wins, as on a create
        request: dict[str, Any] = {
            "Name": name,
            "Value": value,
            "Type": wanted_type,
            "Overwrite": overwrite,
            # Advanced costs money; only a value over the Standard limit (an RSA-4096 key) needs it.
            "Tier": "Advanced" if len(value) > STANDARD_LIMIT else "Standard",
        }
        if secure and kms_key_id:
            request["KeyId"] = kms_key_id
        client = self.client  # created (slow on a cold start) before the last look
        for attempt in range(TOO_MANY_UPDATES_ATTEMPTS):
            if should_stop():
                raise Stopped(f"stopped before writing {name}")
            try:
                return int(client.put_parameter(**request)["Version"])
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ParameterAlreadyExists" and not overwrite:
                    raise ParameterConflict("PutParameter", code, name) from error
                if (
                    code == "ValidationException"
                    and overwrite
                    and request["Tier"] == "Standard"
                    and _is_tier_refusal(error)
                ):
                    # SSM cannot move an Advanced parameter (an RSA-4096 key, before a
                    # KeyAlgorithm change) back to Standard; it stays Advanced, once asked.
                    # Any other validation error is a real one and fails as it is.
                    log.warning("parameter stays in the Advanced tier", extra={"parameter": name})
                    request["Tier"] = "Advanced"
                    continue
                if code != "TooManyUpdates" or attempt == TOO_MANY_UPDATES_ATTEMPTS - 1:
                    raise _error("PutParameter", error) from error
                log.info("TooManyUpdates on a parameter; retrying", extra={"parameter": name})
                self._sleep(0.1 * 2**attempt + random.uniform(0, 0.1))  # noqa: S311
            except BotoCoreError as error:
                raise _error("PutParameter", error) from error
        raise AssertionError("unreachable")

    def delete(
        self, names: Sequence[str], *, should_stop: Callable[[], bool] = _never
    ) -> list[str]:
        """Remove the named parameters; ones already gone are not an error. Returns removed.

        Like :meth:`put`, raises :class:`Stopped` instead of deleting once ``should_stop``.
        """
        removed: list[str] = []
        client = self.client  # created (slow on a cold start) before the last look
        for start in range(0, len(names), GET_PARAMETERS_BATCH):
            batch = list(names[start : start + GET_PARAMETERS_BATCH])
            if should_stop():
                raise Stopped(f"stopped before deleting {', '.join(batch)}")
            try:
                response = client.delete_parameters(Names=batch)
            except (ClientError, BotoCoreError) as error:
                raise _error("DeleteParameters", error) from error
            removed.extend(response.get("DeletedParameters", []))
        return removed
