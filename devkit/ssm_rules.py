"""SSM's own rules, taught to moto: the stand-ins refuse what real Parameter Store refuses.

moto accepts a PutParameter that real SSM rejects, so a test on moto can pass where AWS fails.
This module closes one such gap, once per process, for every moto the project runs: the
in-process ``mock_aws`` of the tests (``tests/conftest.py`` imports it) and moto's server in the
devkit (``devkit/ssm_server.py``'s ``ThreadedMotoServer`` and the lasting endpoint's server
process, ``devkit/local_endpoint.py``). Both run moto's SSM backend in a Python process that has
imported this module, so patching the backend class covers them all.

**No type change on overwrite.** The SSM API reference lists ``HierarchyTypeMismatchException``
for PutParameter: "Parameter Store doesn't support changing a parameter type in a hierarchy. For
example, you can't change a parameter from a String type to a SecureString type. You must create
a new, unique parameter." (API reference, ``HierarchyTypeMismatchException``; the botocore
reference repeats it: docs.aws.amazon.com/botocore/latest/reference/services/ssm/client/
exceptions/HierarchyTypeMismatchException.html). The reverse, SecureString to String, is refused
too (hashicorp/terraform-provider-aws#9843 reports it from a real account). An overwrite that
omits ``Type`` keeps the stored type, as on AWS and as moto already does; writing the same type
again is allowed. The error is moto's own service error, so boto3 raises a ``ClientError`` whose
code is ``HierarchyTypeMismatchException`` with HTTP status 400. The message is ours (AWS's exact
message text is not documented); the code is what callers match on.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from moto.ssm.exceptions import SSMException
from moto.ssm.models import SimpleSystemManagerBackend

TYPE_MISMATCH = "HierarchyTypeMismatchException"
_MARK = "_docker_tls_ssm_rules"


class HierarchyTypeMismatch(SSMException):
    """What SSM answers to an overwrite that changes a parameter's type (HTTP 400)."""

    code = TYPE_MISMATCH

    def __init__(self, name: str, stored: str, requested: str) -> None:
        super().__init__(
            TYPE_MISMATCH,
            f"The parameter {name} is of type {stored}: Parameter Store doesn't support changing "
            f"a parameter type (to {requested}). You must create a new, unique parameter.",
        )


def stored_type(backend: SimpleSystemManagerBackend, name: str) -> str | None:
    """The type of the parameter's latest version, None when there is none. Reads the backing
    dict without ``[]``: moto's dict is a defaultdict, and a lookup would create an entry."""
    versions = dict.get(backend._parameters, name)
    return str(versions[-1].parameter_type) if versions else None


def check_type_change(
    backend: SimpleSystemManagerBackend, name: str, parameter_type: str | None, overwrite: bool
) -> None:
    """Raise :class:`HierarchyTypeMismatch` when an overwrite names a type other than the stored
    one. Without Overwrite moto raises ParameterAlreadyExists itself, as SSM does."""
    if not overwrite or not parameter_type:
        return
    stored = stored_type(backend, name)
    if stored is not None and stored != parameter_type:
        raise HierarchyTypeMismatch(name, stored, parameter_type)


def _ruled_put(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def put_parameter(self: SimpleSystemManagerBackend, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        arguments = bound.arguments
        check_type_change(
            self,
            str(arguments["name"]),
            arguments.get("parameter_type"),
            bool(arguments.get("overwrite")),
        )
        return original(self, *args, **kwargs)

    setattr(put_parameter, _MARK, True)
    return put_parameter


def install() -> None:
    """Patch moto's SSM backend (once: a second call changes nothing)."""
    current = SimpleSystemManagerBackend.put_parameter
    if getattr(current, _MARK, False):
        return
    SimpleSystemManagerBackend.put_parameter = _ruled_put(current)  # type: ignore[method-assign]


def installed() -> bool:
    return bool(getattr(SimpleSystemManagerBackend.put_parameter, _MARK, False))


install()
