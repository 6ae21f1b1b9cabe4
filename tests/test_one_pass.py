"""An Update reads the stored bundle once: each stored value is decoded exactly once.

scripts/flow.py traces the request through ``handler/``; here its counts are held to what the
design says (docs/DESIGN.md §3: one read, one decoding, then the rules read the decoded value).
"""

from __future__ import annotations

from scripts import flow


def test_a_healthy_update_decodes_each_of_the_six_stored_values_once() -> None:
    flows = flow.measure()
    healthy = flows["Update, healthy (reused)"]
    assert sorted(healthy.decodes) == sorted(
        ["certificates_from_stored"]  # ca-cert: the trust set and the CA's own certificate
        + ["certificate_from_stored"] * 2  # the server and client certificates
        + ["private_key_from_stored"] * 3  # the CA, server and client keys
    )
    # The server certificate deleted: the five values read, then the six read back after the
    # write (the bundle must plan healthy before the request succeeds).
    assert len(flows["Update, a leaf renewed"].decodes) == 5 + 6


def test_the_path_goes_down_the_layers_once() -> None:
    path = flow.measure()["Update, healthy (reused)"].path
    # Parse, ensure, read, decode, decide: each layer entered after the one above it.
    order = [path.index(m) for m in ("app", "ensure", "store", "stored", "bundle", "rotation")]
    assert order == sorted(order)
    assert path.count("stored") == 1 and path.count("store") == 1 and path.count("ensure") == 1
