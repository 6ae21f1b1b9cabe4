"""The stack as CloudFormation runs it, locally: ``make stack-local``.

Starts the CloudFormation engine (MiniStack, :mod:`devkit.stack_engine`) on 127.0.0.1, builds
the x86_64 Python 3.13 artifact and deploys ``template.yaml`` with it (the substitutions are in
:func:`devkit.stack_deploy.for_engine`), then drives a stack through real stack operations:
create, a refused no-op update, a Version bump, a failing update and its rollback, a staged CA
rotation with a rolled-back switch, a Rack replacement, a second stack on the same Rack (its
create, a failed create's rollback, its delete) and the delete. One line per step: time, stack
status, the ``Action`` output, the CA fingerprint and the SSM parameters written and removed,
then whether the step did what CloudFormation and the design say. The engine and its Lambdas
are stopped at the end. ``tests/test_stack_engine.py`` asserts the same story in detail.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from devkit.stack_deploy import prepare, with_failing_resource
from devkit.stack_engine import EngineError, missing, stack_engine
from devkit.stack_lifecycle import NO_UPDATES, Stacks, Step, stored_fingerprints
from handler.names import rack_prefix

STACK = "docker-tls-local"
RACK = "docker-tls-local"
NEW_RACK = "docker-tls-local-2"
SECOND = "docker-tls-local-user"

Check = Callable[[Step], str | None]  # None when the step is as expected, else what is wrong


def _expect(status: str, action: str | None = None, *, writes: bool | None = None) -> Check:
    def check(step: Step) -> str | None:
        if step.status != status:
            return f"status {step.status}, expected {status}"
        if action is not None and step.action != action:
            return f"Action {step.action}, expected {action}"
        if writes is False and step.written:
            return f"wrote {len(step.written)} parameters, expected none"
        return None

    return check


def run(stacks: Stacks, out: TextIO) -> bool:
    """Drive the lifecycle; print one line per step; whether every step was as expected."""
    problems: list[str] = []

    def step(made: Step, check: Check, extra: Callable[[], str | None] | None = None) -> Step:
        problem = check(made) or (extra() if extra else None)
        print(made.line() + ("" if problem is None else f"  UNEXPECTED: {problem}"), file=out)
        if made.reason and (problem or made.status.endswith("ROLLBACK_COMPLETE")):
            print(f"{'':<48}reason: {made.reason[:160]}", file=out)
        if problem:
            problems.append(f"{made.label}: {problem}")
        return made

    def trusts_outputs(stack: str = STACK) -> Callable[[], str | None]:
        def check() -> str | None:
            installed = stored_fingerprints(stacks.user_data_ca(stack))
            listed = tuple(stacks.outputs(stack)["TrustedCAFingerprints"].split(","))
            if installed != listed:
                return "the launch template's ca.pem is not TrustedCAFingerprints"
            return None

        return check

    def untouched(rack: str, before: dict[str, str]) -> Callable[[], str | None]:
        def check() -> str | None:
            now = stacks.bundle_digests(rack_prefix(rack))
            if now == before:
                return None
            return f"the first stack's bundle (Rack {rack}) {'is gone' if not now else 'changed'}"

        return check

    prefix = rack_prefix(RACK)
    new_prefix = rack_prefix(NEW_RACK)
    step(
        stacks.create("1. create", STACK, Rack=RACK),
        _expect("CREATE_COMPLETE", "created"),
        trusts_outputs(),
    )
    refused = stacks.update("2. update, nothing changed", STACK)
    step(refused, lambda s: None if NO_UPDATES in s.reason else "not refused")
    step(
        stacks.update("3. update Version", STACK, Version="2"),
        _expect("UPDATE_COMPLETE", "reused", writes=False),
    )
    before = stacks.bundle_digests(prefix)
    step(
        stacks.update("4. update KeyAlgorithm=RSA-4096 (fails)", STACK, KeyAlgorithm="RSA-4096"),
        _expect("UPDATE_ROLLBACK_COMPLETE"),
        lambda: _same_ca(stacks.bundle_digests(prefix), before),
    )
    step(
        stacks.update("5. RotationStage=introduce", STACK, RotationStage="introduce"),
        _expect("UPDATE_COMPLETE", "introduced"),
        trusts_outputs(),
    )
    step(
        stacks.update(
            "6. switch with RSA-4096 (fails)",
            STACK,
            RotationStage="switch",
            KeyAlgorithm="RSA-4096",
        ),
        _expect("UPDATE_ROLLBACK_COMPLETE", "introduced"),
        trusts_outputs(),
    )
    step(
        stacks.update("7. RotationStage=switch", STACK, RotationStage="switch"),
        _expect("UPDATE_COMPLETE", "switched"),
        trusts_outputs(),
    )
    step(
        stacks.update("8. RotationStage removed (retire)", STACK, RotationStage=""),
        _expect("UPDATE_COMPLETE", "retired"),
        trusts_outputs(),
    )
    step(
        stacks.update("9. update Rack (replacement)", STACK, Rack=NEW_RACK),
        _expect("UPDATE_COMPLETE", "created"),
        lambda: None if not stacks.bundle_digests(prefix) else f"{prefix}'s bundle was not removed",
    )
    first = stacks.bundle_digests(new_prefix)
    step(
        stacks.create("10. second stack, same Rack", SECOND, Rack=NEW_RACK),
        _expect("CREATE_COMPLETE", "reused", writes=False),
        untouched(NEW_RACK, first),
    )
    step(
        stacks.delete("11. delete the second stack", SECOND),
        _expect("DELETE_COMPLETE"),
        untouched(NEW_RACK, first),
    )
    failing = with_failing_resource(stacks.template.body)
    step(
        stacks.create(
            "12. second stack failing after the generator", SECOND, body=failing, Rack=NEW_RACK
        ),
        _expect("ROLLBACK_COMPLETE"),
        untouched(NEW_RACK, first),
    )
    stacks.delete("    (its deletion)", SECOND)
    step(
        stacks.delete("13. delete", STACK),
        _expect("DELETE_COMPLETE"),
        lambda: None if not stacks.bundle_digests(new_prefix) else "parameters left",
    )
    if problems:
        print(f"\n{len(problems)} step(s) not as expected:", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
    return not problems


def _same_ca(now: dict[str, str], before: dict[str, str]) -> str | None:
    names = [n for n in before if n.endswith(("-docker-tls-ca-cert", "-docker-tls-ca-key"))]
    return None if all(now.get(n) == before[n] for n in names) else "the CA changed"


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", type=Path, help="state directory to keep (default: temporary)")
    arguments = parser.parse_args(argv)
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="stack-local-") as temporary:
        state = arguments.keep or Path(temporary)
        started = time.monotonic()
        try:
            with stack_engine(state / "engine") as engine:
                print(
                    f"engine: MiniStack on {engine.url} ({time.monotonic() - started:.1f} s)",
                    file=out,
                )
                built = time.monotonic()
                template = prepare(engine, state / "build")
                print(
                    f"artifact: built (x86_64, python3.13) and uploaded to the engine's S3 "
                    f"({time.monotonic() - built:.1f} s)\n",
                    file=out,
                )
                print(
                    f"{'step':<46} {'time':>7}  {'stack status':<26} {'Action':<11} "
                    f"{'CA fingerprint':<18} SSM",
                    file=out,
                )
                passed = run(Stacks(engine, template), out)
        except EngineError as error:
            print(f"engine: {error}", file=sys.stderr)
            return 1
        print(
            f"\nengine stopped; {time.monotonic() - started:.1f} s in all: "
            f"{'every step as expected' if passed else 'NOT as expected'}",
            file=out,
        )
        return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
