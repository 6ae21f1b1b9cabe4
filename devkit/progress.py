"""A line at least every few seconds while a long phase runs (an install, an image build, an
invoke in a container), so a silent minute never looks like a hang.

In Python: ``with ticking(note, "debootstrap trixie"): ...`` calls ``note("debootstrap trixie:
still running (10 s)")`` every 10 s until the block ends. From make (standard library only, so
it runs on the system Python before any virtualenv exists)::

    python3 -m devkit.progress --log .venv/install.log "installing into .venv" -- pip install ...

runs the command with its output appended to the log, prints a line to stderr every 10 s, and
exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

EVERY_SECONDS = 10.0


@contextmanager
def ticking(note: Callable[[str], None], what: str, every: float | None = None) -> Iterator[None]:
    """Call ``note`` with a progress line every ``every`` seconds (default
    :data:`EVERY_SECONDS`) while the block runs; none after it ends."""
    every = every or EVERY_SECONDS
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            note(f"{what}: still running ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=tick, name=f"progress: {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run(
    command: Sequence[str],
    what: str,
    *,
    every: float | None = None,
    log: Path | None = None,
    note: Callable[[str], None] | None = None,
) -> int:
    """Run ``command`` (its output appended to ``log``, else inherited) with progress lines;
    its exit code."""
    note = note or (lambda text: print(text, file=sys.stderr, flush=True))
    with ticking(note, what, every):
        if log is None:
            return subprocess.run(command, check=False).returncode
        with log.open("ab") as handle:
            return subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, check=False
            ).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devkit.progress",
        description="Run a command, printing a progress line to stderr every few seconds; "
        "exits with the command's exit code.",
    )
    parser.add_argument("what", help="what the command does, for the progress lines")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    parser.add_argument("--every", type=float, default=EVERY_SECONDS, help="seconds per line")
    parser.add_argument("--log", type=Path, help="append the command's output here")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    try:
        return run(command, args.what, every=args.every, log=args.log)
    except OSError as error:
        print(f"{args.what}: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127
    except KeyboardInterrupt:
        print(f"{args.what}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
