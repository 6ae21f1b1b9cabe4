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

**The project's invariants on every write** (issue 22). While ``SSM_STAND_IN_RULES`` names a
directory (``tests/conftest.py`` sets one per test, and server processes started by a test
inherit it), every PutParameter and DeleteParameter(s) that docker-tls's own code makes is
checked against :mod:`devkit.ssm_invariants` (keys only as SecureString, only a rack bundle's
names, only base64 of PEM), and every write at all inside :func:`read_only` (``plan``,
``inspect``, ``export``) is refused. A refused write gets the error code
``StandInInvariantViolation`` (HTTP 400) *and* is recorded (:func:`take_violations`), so a caller
that swallows the error still fails the test: the conftest fixture fails it at teardown.

Who wrote it: a test's own setup writes through the same moto, and must stay free to store what
the convox handler stored (String keys, a version-track, corrupt values). In-process (a boto3
call that ``mock_aws`` answers in the calling thread) a write is docker-tls's when a frame of
``handler/`` or ``docker_tls_cli/`` is on the stack; a test writing directly is not checked.
Over HTTP (moto's server in a thread or in the lasting endpoint's process) the caller's stack is
out of sight, so every write is checked unless the test says it seeds: :func:`seeding`.

Scopes (:func:`seeding`, :func:`read_only`) hold in this process and, through the file ``scope``
in that directory, in every server process that reads it at each request; that is how a CLI
run as a subprocess against the lasting endpoint is held read-only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moto.ssm.exceptions import SSMException
from moto.ssm.models import SimpleSystemManagerBackend

from devkit import ssm_invariants

TYPE_MISMATCH = "HierarchyTypeMismatchException"
VIOLATION = "StandInInvariantViolation"
#: A directory: invariants are enforced while it is set; holds ``scope`` and ``violations.log``.
RULES_DIR_ENV = "SSM_STAND_IN_RULES"
SEEDING = "seeding"
_READ_ONLY = "read-only "
_MARK = "_docker_tls_ssm_rules"
#: The code under test: what docker-tls ships (the Lambda's handler and the CLI).
#: (by module name, wherever the package was imported from: a mutation run's copy included).
_PROJECT_PACKAGES = ("handler", "docker_tls_cli")


class HierarchyTypeMismatch(SSMException):
    """What SSM answers to an overwrite that changes a parameter's type (HTTP 400)."""

    code = TYPE_MISMATCH

    def __init__(self, name: str, stored: str, requested: str) -> None:
        super().__init__(
            TYPE_MISMATCH,
            f"The parameter {name} is of type {stored}: Parameter Store doesn't support changing "
            f"a parameter type (to {requested}). You must create a new, unique parameter.",
        )


class InvariantViolation(SSMException):
    """What the stand-ins answer to a write docker-tls must never make (HTTP 400)."""

    code = VIOLATION

    def __init__(self, problems: list[str]) -> None:
        super().__init__(VIOLATION, "refused by the test stand-in: " + "; ".join(problems))


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


# --- scopes and violations -------------------------------------------------------------------

_lock = threading.Lock()
_scopes: list[str] = []  # this process's, innermost last
_violations: list[str] = []  # recorded while no rules directory is set


def _rules_dir() -> Path | None:
    value = os.environ.get(RULES_DIR_ENV)
    return Path(value) if value else None


def current_scope() -> str | None:
    """``seeding``, ``read-only <label>``, or None (ordinary checked writes)."""
    if _scopes:
        return _scopes[-1]
    directory = _rules_dir()
    if directory is None:
        return None
    try:
        return (directory / "scope").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def _scope(scope: str, *, shared: bool) -> Iterator[None]:
    directory = _rules_dir() if shared else None
    path = directory / "scope" if directory else None
    before = path.read_text(encoding="utf-8") if path and path.exists() else None
    with _lock:
        _scopes.append(scope)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scope, encoding="utf-8")
    try:
        yield
    finally:
        with _lock:
            _scopes.remove(scope)
        if path:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before, encoding="utf-8")


def seeding() -> contextlib.AbstractContextManager[None]:
    """Writes inside are a test's setup (what the convox handler or a fault left), unchecked."""
    return _scope(SEEDING, shared=True)


def read_only(label: str) -> contextlib.AbstractContextManager[None]:
    """Every write inside is a violation: wrap a ``plan``/``inspect``/``export`` call in it."""
    return _scope(_READ_ONLY + label, shared=True)


def unchecked_here() -> contextlib.AbstractContextManager[None]:
    """Seeding in this process only (the lasting endpoint restoring its own saved state)."""
    return _scope(SEEDING, shared=False)


def record(problems: list[str]) -> None:
    directory = _rules_dir()
    if directory is None:
        with _lock:
            _violations.extend(problems)
        return
    directory.mkdir(parents=True, exist_ok=True)
    with _lock, (directory / "violations.log").open("a", encoding="utf-8") as log:
        log.writelines(f"{problem}\n" for problem in problems)


def take_violations() -> list[str]:
    """Every violation recorded so far (this process's, and the servers' that share the rules
    directory), forgetting them."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
        directory = _rules_dir()
        if directory is not None:
            log = directory / "violations.log"
            with contextlib.suppress(FileNotFoundError):
                taken += log.read_text(encoding="utf-8").splitlines()
                log.unlink()
    return taken


def _by_project() -> bool:
    """Whether docker-tls's own code makes this call (see the module docstring)."""
    frame = sys._getframe(2)
    in_process = project = False
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        in_process = in_process or package == "botocore"
        project = project or package in _PROJECT_PACKAGES
        frame = frame.f_back  # type: ignore[assignment]
    return project or not in_process


def _enforced() -> bool:
    return _rules_dir() is not None or bool(_scopes)


def _refuse(problems: list[str]) -> None:
    if problems:
        record(problems)
        raise InvariantViolation(problems)


def _judged(names: list[str], verb: str) -> bool:
    """Whether these writes or deletes are the project's to judge: refuses them in a read-only
    scope (``verb``: what was done), and says no for seeding or when the rules are off."""
    if not _enforced():
        return False
    scope = current_scope()
    if scope == SEEDING:
        return False
    if scope and scope.startswith(_READ_ONLY):
        label = scope.removeprefix(_READ_ONLY)
        _refuse([f"{name}: {verb} during {label}, which writes nothing" for name in names])
    return _by_project()


def _check_write(
    backend: SimpleSystemManagerBackend, name: str, parameter_type: str | None, value: Any
) -> None:
    if _judged([name], "written"):
        effective = parameter_type or stored_type(backend, name)
        _refuse(ssm_invariants.write_problems(name, effective, value))


def _check_deletes(names: list[str]) -> None:
    if _judged(names, "deleted"):
        _refuse([problem for name in names for problem in ssm_invariants.delete_problems(name)])


# --- the patches ------------------------------------------------------------------------------


def _ruled_put(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def put_parameter(self: SimpleSystemManagerBackend, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        name = str(arguments["name"])
        parameter_type = arguments.get("parameter_type")
        _check_write(self, name, parameter_type, arguments.get("value"))
        check_type_change(self, name, parameter_type, bool(arguments.get("overwrite")))
        return original(self, *args, **kwargs)

    setattr(put_parameter, _MARK, True)
    return put_parameter


def _ruled_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_parameter(self: SimpleSystemManagerBackend, name: str) -> Any:
        _check_deletes([name])
        return original(self, name)

    setattr(delete_parameter, _MARK, True)
    return delete_parameter


def _ruled_deletes(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_parameters(self: SimpleSystemManagerBackend, names: list[str]) -> Any:
        _check_deletes(list(names))
        return original(self, names)

    setattr(delete_parameters, _MARK, True)
    return delete_parameters


_PATCHES = {
    "put_parameter": _ruled_put,
    "delete_parameter": _ruled_delete,
    "delete_parameters": _ruled_deletes,
}


def install() -> None:
    """Patch moto's SSM backend (once: a second call changes nothing)."""
    # moto's server warns that our code is not in SSM's model; it is ours on purpose.
    warnings.filterwarnings("ignore", rf"Exception\(InvariantViolation\) with code {VIOLATION}")
    for method, ruled in _PATCHES.items():
        current = getattr(SimpleSystemManagerBackend, method)
        if not getattr(current, _MARK, False):
            setattr(SimpleSystemManagerBackend, method, ruled(current))


def installed() -> bool:
    return all(
        getattr(getattr(SimpleSystemManagerBackend, method), _MARK, False) for method in _PATCHES
    )


install()
