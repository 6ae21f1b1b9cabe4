"""Peak memory of a fresh process that serves one Create: what the function needs configured.

Lambda bills and kills by memory, so the figure is the peak RSS (VmHWM) of a fresh interpreter
that imports the handler and serves a Create, RSA-2048 and RSA-4096 (the largest key it
generates). moto is heavy, so its share is measured alone and the Create is measured twice:
against moto, and as in Lambda without moto (the SSM client a dict behind the same methods,
the real boto3 client still made).
"""

from __future__ import annotations

import json
import subprocess
import sys

from harness import subprocess_env
from report import ROOT, table

# Peak RSS of this process: VmHWM, because ru_maxrss carries the forking parent's peak across
# exec (Linux keeps the larger of the two), which would report the benchmark's own size.
_PEAK = """
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_kb": maxrss, "hwm_kb": int(hwm)}))
"""

_MEMORY = """
import os, resource, json, logging, sys
logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))
mode, algorithm = sys.argv[1], sys.argv[2]
from moto import mock_aws
with mock_aws():
    if mode == "moto-ssm":  # moto's SSM backend loaded and answering, no handler
        import boto3
        boto3.client("ssm", region_name="us-east-1").get_parameters(Names=["absent"])
    if mode == "create":
        import boto3
        from devkit.events import LambdaContext, event
        from handler import app
        from handler.store import ParameterStore
        app.store = ParameterStore(boto3.client("ssm", region_name="us-east-1"))
        sent = []
        app.helper.send_response = lambda url, body: sent.append(body) or True
        props = {"Rack": "memory", "KeyAlgorithm": algorithm}
        app.lambda_handler(event("Create", app.GENERATOR, "DockerTLS", props,
                                 response_url="https://example/r"), LambdaContext())
        assert sent[0]["Status"] == "SUCCESS", sent
"""

# Lambda-like: no moto at all; the SSM client is a dict behind the same method names.
_MEMORY_NO_MOTO = """
import os, resource, json, logging, sys
logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))
algorithm = sys.argv[1]
from devkit.events import LambdaContext, event
from handler import app, store
store.default_client()  # what the real client costs, though the calls go to a dict
class DictSSM:
    def __init__(self): self.values = {}
    def get_parameters(self, Names, WithDecryption):
        return {"Parameters": [dict(Name=n, Value=v[0], Type=v[1], Version=1)
                               for n, v in self.values.items() if n in Names]}
    def put_parameter(self, Name, Value, Type, Overwrite, Tier, KeyId=None):
        self.values[Name] = (Value, Type); return {"Version": 1}
    def delete_parameters(self, Names):
        return {"DeletedParameters": [n for n in Names if self.values.pop(n, None)]}
app.store = store.ParameterStore(DictSSM())
sent = []
app.helper.send_response = lambda url, body: sent.append(body) or True
props = {"Rack": "memory", "KeyAlgorithm": algorithm}
app.lambda_handler(event("Create", app.GENERATOR, "DockerTLS", props,
                         response_url="https://example/r"), LambdaContext())
assert sent[0]["Status"] == "SUCCESS", sent
"""


def memory() -> tuple[str, dict[str, float]]:
    env = subprocess_env(None, write_bytecode=False)

    def peak(code: str, *args: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", code + _PEAK, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(json.loads(out.stdout)["hwm_kb"]) / 1024

    bare = peak(_MEMORY, "baseline", "-")
    baseline = peak(_MEMORY, "moto-ssm", "-")
    rows = [
        ["`import moto` + `mock_aws()`, nothing else", f"{bare:.1f}", ""],
        ["moto with its SSM backend loaded (one GetParameters), no handler", f"{baseline:.1f}",
         "(moto's share)"],
    ]  # fmt: skip
    result = {"moto_baseline": baseline}
    for algorithm in ("RSA-2048", "RSA-4096"):
        full = peak(_MEMORY, "create", algorithm)
        rows.append(
            [f"full Create {algorithm} against moto", f"{full:.1f}", f"{full - baseline:+.1f}"]
        )
        lean = peak(_MEMORY_NO_MOTO, algorithm)
        rows.append(
            [f"full Create {algorithm}, no moto (dict SSM, real boto3 client made)",
             f"{lean:.1f}", "(the handler alone)"]
        )  # fmt: skip
        result[algorithm] = full
        result[f"{algorithm} no moto"] = lean
    return table(["fresh process", "peak RSS (VmHWM) MB", "over moto's share MB"], rows), result
