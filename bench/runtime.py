"""The function in its Python 3.13 runtime container: cold first invoke, warm round trips.

Run with ``make bench-runtime`` (or ``.venv/bin/python bench/runtime.py``). Needs what
``make sam-local`` needs (a Docker engine or root + dockerd, the SAM CLI in .venv-sam); uses the
same runtime image, build and local endpoints (:func:`devkit.sam_local.local_lambda`), never
AWS. Prints markdown tables and rewrites the ``runtime:begin``/``runtime:end`` section of
docs/BENCHMARKS.md.

How it measures:
- ``sam local start-lambda --warm-containers EAGER`` serves the function; a boto3 Lambda client
  on 127.0.0.1 invokes it and times each call: SAM's local endpoint, the emulator, the
  function, its SSM calls to moto's server and its response PUT over HTTPS to the receiver
  (checked to be SUCCESS with the expected Action; a failed call is not a figure).
- Cold: the first invoke after start-lambda is up (the emulator starts the Python runtime on
  it): an Update that reuses a bundle seeded beforehand. Warm: further Updates that reuse, and
  Creates of new racks (RSA-2048, three key generations), in the same container.
- Each round starts start-lambda once for the shipped artifact and once for a copy without
  bytecode, alternating which goes first.
- Imports: fresh ``python3`` processes in the runtime image (``docker run``), timing
  ``import boto3``, ``cryptography.x509`` and ``handler.app`` with and without the bytecode.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import cpu, median, ms, table, write_section  # noqa: E402

from devkit.events import event  # noqa: E402
from devkit.loopback import accepts, free_port  # noqa: E402
from devkit.sam_local import FUNCTION, WORK, LocalLambda, local_lambda  # noqa: E402
from handler import GENERATOR  # noqa: E402

BEGIN, END = "<!-- runtime:begin -->", "<!-- runtime:end -->"
SEEDED_RACK = "bench-runtime"
CREATE_PROPERTIES = {"KeyAlgorithm": "RSA-2048", "Version": "1"}
VARIANTS = ("shipped (3.13 bytecode)", "without bytecode")

_IMPORTS = """
import json, sys, time
sys.path.insert(0, "/var/task")
t0 = time.perf_counter(); import boto3
t1 = time.perf_counter(); import cryptography.x509
t2 = time.perf_counter(); import handler.app
t3 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "x509": t2 - t1, "handler": t3 - t2, "total": t3 - t0}))
"""


def _note(text: str) -> None:
    print(f"bench-runtime: {text}", file=sys.stderr, flush=True)


def _without_bytecode(build_dir: Path) -> Path:
    """A copy of the sam build output whose artifact has no .pyc."""
    copy = build_dir.parent / "build-no-bytecode"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(build_dir, copy, symlinks=True)
    for cache in copy.rglob("__pycache__"):
        shutil.rmtree(cache)
    return copy


def _seed(rack: str) -> None:
    """A bundle for the Updates to reuse, written by the handler's own code."""
    from handler.ensure import ensure
    from handler.properties import parse_generator
    from handler.store import ParameterStore

    now = dt.datetime.now(dt.UTC)
    props = parse_generator({"Rack": rack, **CREATE_PROPERTIES}, now)
    ensure(ParameterStore(), props, rotate=False, now=now)


class StartLambda:
    """``sam local start-lambda`` for one build, on a free loopback port."""

    def __init__(self, function: LocalLambda, template: Path, log: Path) -> None:
        self.port = free_port()
        arguments = list(function.invoke_arguments)
        arguments[arguments.index("--template") + 1] = str(template)
        self.function = function
        started = time.monotonic()
        self.process = function.sam.popen(
            [
                "local",
                "start-lambda",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--warm-containers",
                "EAGER",
                *arguments,
            ],
            log,
        )
        while not accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"start-lambda exited: see {log}")
            if time.monotonic() - started > 300:
                raise RuntimeError(f"start-lambda not ready after 300 s: see {log}")
            time.sleep(0.2)
        self.ready_seconds = time.monotonic() - started
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, read_timeout=300, connect_timeout=10),
        )

    def invoke(self, request: dict[str, Any], action: str) -> float:
        """One round trip, in seconds; raises unless the function answered SUCCESS/action."""
        body = {**request, "ResponseURL": self.function.receiver.url()}
        started = time.perf_counter()
        self.client.invoke(FunctionName=FUNCTION, Payload=json.dumps(body).encode())
        seconds = time.perf_counter() - started
        responses = self.function.receiver.responses(body["ResponseURL"])
        got = [(r.get("Status"), (r.get("Data") or {}).get("Action")) for r in responses]
        if got != [("SUCCESS", action)]:
            raise RuntimeError(f"expected one SUCCESS/{action} response, got {got}")
        return seconds

    def stop(self) -> None:
        # SIGINT is SAM's Ctrl+C: it stops its warm containers on the way out.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        leftovers = self.function.sam.engine.docker(
            "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"
        ).stdout.split()
        if leftovers:
            self.function.sam.engine.docker("rm", "-f", *leftovers)


def _round_trips(
    function: LocalLambda, templates: dict[str, Path], rounds: int, warm: int
) -> dict[str, dict[str, list[float]]]:
    update = event(
        "Update",
        GENERATOR,
        "DockerTLS",
        {"Rack": SEEDED_RACK, **CREATE_PROPERTIES, "Version": "2"},
        response_url="",
        physical_id=SEEDED_RACK.encode().hex(),
        old_properties={"Rack": SEEDED_RACK, **CREATE_PROPERTIES},
    )
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    created = 0
    for round_ in range(rounds):
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            _note(f"round {round_ + 1}/{rounds}: start-lambda, {variant}")
            log = function.work / "logs" / f"start-lambda-{round_}-{VARIANTS.index(variant)}.log"
            server = StartLambda(function, templates[variant], log)
            series = samples[variant]
            try:
                series.setdefault("ready", []).append(server.ready_seconds)
                series.setdefault("cold", []).append(server.invoke(update, "reused"))
                for _ in range(warm):
                    series.setdefault("update", []).append(server.invoke(update, "reused"))
                for _ in range(warm):
                    created += 1
                    create = event(
                        "Create",
                        GENERATOR,
                        "DockerTLS",
                        {"Rack": f"bench-create-{created}", **CREATE_PROPERTIES},
                        response_url="",
                    )
                    series.setdefault("create", []).append(server.invoke(create, "created"))
            finally:
                server.stop()
    return samples


def _imports(function: LocalLambda, templates: dict[str, Path], runs: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(runs):
        for variant in VARIANTS:
            task = templates[variant].parent / FUNCTION
            out = function.sam.engine.docker(
                "run",
                "--rm",
                "--network",
                "none",
                "-e",
                "AWS_DEFAULT_REGION=us-east-1",
                "-e",
                "LOG_LEVEL=WARNING",
                "-v",
                f"{task}:/var/task:ro",
                "--entrypoint",
                "/var/lang/bin/python3",
                function.image,
                "-c",
                _IMPORTS,
            )
            samples[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return samples


def _spread(values: list[float]) -> list[str]:
    return [str(len(values)), ms(median(values)), ms(min(values)), ms(max(values))]


def report(function: LocalLambda, args: argparse.Namespace) -> str:
    templates = {
        VARIANTS[0]: function.template,
        VARIANTS[1]: _without_bytecode(function.build_dir) / "template.yaml",
    }
    _seed(SEEDED_RACK)
    _note(f"imports in the runtime image, {args.import_runs} runs per variant")
    imports = _imports(function, templates, args.import_runs)
    trips = _round_trips(function, templates, args.rounds, args.warm)
    shipped, bare = (trips[v] for v in VARIANTS)
    rows = [
        ["cold: first invoke, an Update that reuses", VARIANTS[0], *_spread(shipped["cold"])],
        ["cold: first invoke, an Update that reuses", VARIANTS[1], *_spread(bare["cold"])],
        ["warm: Update that reuses", VARIANTS[0], *_spread(shipped["update"])],
        ["warm: Create (RSA-2048, 3 keys, 6 writes)", VARIANTS[0], *_spread(shipped["create"])],
    ]
    ready = shipped["ready"] + bare["ready"]
    rows.append(["start-lambda ready (seconds, not ms)", "either", *_seconds(ready)])
    text = table(["round trip", "artifact", "n", "median ms", "min ms", "max ms"], rows)
    cold_saving = median(bare["cold"]) - median(shipped["cold"])
    init = median(shipped["cold"]) - median(shipped["update"])
    text += (
        f"\n\nCold minus warm (the runtime's start, imports included), medians: "
        f"**{init * 1000:.0f} ms**. Bytecode saves **{cold_saving * 1000:.0f} ms** of the cold "
        f"first invoke (median of {len(bare['cold'])} against {len(shipped['cold'])})."
    )
    rows = []
    for part in ("boto3", "x509", "handler", "total"):
        for variant in VARIANTS:
            values = [sample[part] for sample in imports[variant]]
            rows.append([part, variant, *_spread(values)])
    text += "\n\nImports in the runtime image (a fresh `python3` per run, `docker run`):\n\n"
    text += table(["import", "artifact", "n", "median ms", "min ms", "max ms"], rows)
    return text


def _seconds(values: list[float]) -> list[str]:
    return [str(len(values)), f"{median(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="start-lambda runs per variant")
    parser.add_argument("--warm", type=int, default=10, help="warm invokes of each kind per run")
    parser.add_argument("--import-runs", type=int, default=10, help="docker runs per variant")
    parser.add_argument("--image", choices=("auto", "aws", "debian"), default="auto")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started = time.perf_counter()
    with local_lambda(image_choice=args.image, work=WORK.parent / "bench-runtime", note=_note) as f:
        body = report(f, args)
        docker = f.sam.engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    size = f", {f.image_bytes / 1e6:.0f} MB" if f.image_bytes else ""
    header = (
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench-runtime` in "
        f"{time.perf_counter() - started:.0f} s.\n\n"
        f"- Machine: {cpu()}; Docker engine {docker}, storage driver vfs\n"
        f"- Runtime image: {f.image} ({f.image_origin}{size}); {f.sam_version}\n"
        "- Absolute times are for this machine (a shared, noisy 2-core box), through SAM's "
        "emulator, not Lambda's; the differences between rows are the portable results.\n"
    )
    generated = header + "\n" + body + "\n"
    print(generated)
    if not args.no_write:
        write_section(BEGIN, END, generated)
        print("wrote docs/BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
