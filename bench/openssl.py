"""Against the OpenSSL command-line recipe: what the project saves a fleet's operator.

The recipe is the one Docker's documentation gives ("Protect the Docker daemon socket"): a CA,
a server and a client certificate from eight ``openssl`` processes. It is the alternative a
user would otherwise script, so it is the baseline for a Create: the same three RSA-2048 keys
and certificates, run interleaved with our Creates so both sides share the machine's noise.
The ratio of their medians is the portable figure; the recipe is verified to work
(``openssl verify``) before it is timed.

The Create samples for the other KeyAlgorithms are taken here too, after the interleaved
RSA-2048 ones, so that the Create table (:func:`latency.create_table`) covers them all.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ALGORITHMS, Harness
from latency import create_latency, create_once, create_table
from report import median, ms, p90, table

OPENSSL_RECIPE = [
    # Docker docs, "Protect the Docker daemon socket", with RSA-2048 and 36500 days, no
    # passphrase (genrsa without -aes256) and -subj instead of the interactive prompts.
    "openssl genrsa -out ca-key.pem 2048",
    "openssl req -new -x509 -days 36500 -key ca-key.pem -sha256 -out ca.pem "
    "-subj /CN=docker-tls-CA",
    "openssl genrsa -out server-key.pem 2048",
    "openssl req -subj /CN=localhost -sha256 -new -key server-key.pem -out server.csr",
    "openssl x509 -req -days 36500 -sha256 -in server.csr -CA ca.pem -CAkey ca-key.pem "
    "-CAcreateserial -out server-cert.pem -extfile extfile.cnf",
    "openssl genrsa -out key.pem 2048",
    "openssl req -subj /CN=client -new -key key.pem -out client.csr",
    "openssl x509 -req -days 36500 -sha256 -in client.csr -CA ca.pem -CAkey ca-key.pem "
    "-CAcreateserial -out cert.pem -extfile extfile-client.cnf",
]


def openssl_once(verify: bool = False) -> tuple[float, float]:
    """(whole recipe, its three genrsa commands) in seconds."""
    genrsa = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-openssl-") as tmp:
        start = time.perf_counter()
        Path(tmp, "extfile.cnf").write_text(
            "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
        )
        Path(tmp, "extfile-client.cnf").write_text("extendedKeyUsage = clientAuth\n")
        for command in OPENSSL_RECIPE:
            began = time.perf_counter()
            subprocess.run(command.split(), cwd=tmp, check=True, capture_output=True)
            if " genrsa " in command:
                genrsa += time.perf_counter() - began
        elapsed = time.perf_counter() - start
        if verify:
            for cert in ("server-cert.pem", "cert.pem"):
                subprocess.run(
                    ["openssl", "verify", "-CAfile", "ca.pem", cert],
                    cwd=tmp,
                    check=True,
                    capture_output=True,
                )
        return elapsed, genrsa


def creates_vs_openssl(h: Harness, runs: int, openssl_runs: int) -> tuple[str, str, dict[str, Any]]:
    """The Create table per KeyAlgorithm, the comparison with the recipe, and their figures."""
    openssl_once(verify=True)  # the recipe works (and warms the page cache)
    create_once(h, "RSA-2048")
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for i in range(max(runs, openssl_runs)):  # interleaved: both sides share the noise
        if i < runs:
            ours.append(create_once(h, "RSA-2048"))
        if i < openssl_runs:
            theirs.append(openssl_once())
    samples = {"RSA-2048": ours}
    for algorithm in ALGORITHMS[1:]:
        samples[algorithm] = create_latency(h, algorithm, runs)
    create_text, result = create_table(samples)
    our_totals = [t for t, _ in ours]
    their_totals = [t for t, _ in theirs]
    ratio = median(their_totals) / median(our_totals)
    compare = table(
        ["RSA-2048 CA + server + client", "n", "median ms", "p90 ms", "of which keygen ms"],
        [
            ["docker-tls Create, in-process (3 keys, 3 certs, 7 SSM writes, verify re-read)",
             len(ours), ms(median(our_totals)), ms(p90(our_totals)),
             ms(median([k for _, k in ours]))],
            ["OpenSSL CLI recipe from Docker's docs (8 openssl processes)",
             len(theirs), ms(median(their_totals)), ms(p90(their_totals)),
             ms(median([k for _, k in theirs])) + " (3 x genrsa, process included)"],
        ],
    )  # fmt: skip
    compare += f"\n\nOpenSSL recipe / docker-tls Create (medians): **{ratio:.1f}x**"
    result["openssl_ratio"] = ratio
    return create_text, compare, result
