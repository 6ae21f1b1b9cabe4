"""Structural checks of template.yaml (AWS SAM), plus cfn-lint.

Each property is a ``check_*`` function that raises AssertionError. The ``test_*`` functions run
the checks on the real template; ``test_check_catches`` runs each check on a deliberately broken
copy and expects it to fail, so no assertion here can pass vacuously.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A hard import: without cfn-lint (a dev dependency) these tests must fail, not skip.
import cfnlint.decode as cfnlint_decode
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

FUNCTION_ID = "DockerTlsFunction"
GENERATOR_TYPE = "Custom::SelfSignedCertificate"
GETTER_TYPE = "Custom::SelfSignedCertificateGetter"

# The bundle's parameters (six, and three more during a staged rotation), and the legacy one
# that is only read and deleted.
BUNDLE_SUFFIXES = (
    "-docker-tls-ca-cert",
    "-docker-tls-ca-key",
    "-docker-tls-server-cert",
    "-docker-tls-server-key",
    "-docker-tls-cert",
    "-docker-tls-key",
    # A staged CA rotation's extras (RotationStage).
    "-docker-tls-next-ca-key",
    "-docker-tls-previous-ca-key",
    "-docker-tls-previous-ca-cert",
    # Which resource owns the bundle (handler.ownership).
    "-docker-tls-owner",
)
KEY_SUFFIXES = ("-docker-tls-ca-key", "-docker-tls-server-key", "-docker-tls-key",
                "-docker-tls-next-ca-key", "-docker-tls-previous-ca-key")  # fmt: skip
LEGACY_SUFFIX = "-version-track"
ARN_BASE = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/"
ARN_PREFIX = ARN_BASE + "*"
BUNDLE_ARNS = {ARN_PREFIX + s for s in BUNDLE_SUFFIXES}
# This rack's own parameters, named through the generator's PhysicalResourceId (hex of Rack).
RACK_PREFIX = ARN_BASE + "${DockerTLS}"
LEGACY_ARN = RACK_PREFIX + LEGACY_SUFFIX
# The calls the function makes, and nothing else.
SSM_ACTIONS = {"ssm:GetParameters", "ssm:PutParameter", "ssm:DeleteParameters"}
LEGACY_ACTIONS = {"ssm:DeleteParameters"}
KMS_ACTIONS = {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}

# docs/DESIGN.md §1: properties each type accepts, and the generator's returned attributes.
COMMON_PROPS = {"ServiceToken", "ServiceTimeout", "Description"}
GENERATOR_PROPS = COMMON_PROPS | {
    "Rack",
    "Version",
    "KeyAlgorithm",
    "ValidityDays",
    "RenewBeforeDays",
    "ServerSubjectAltNames",
    "KmsKeyId",
    "RotationToken",
    "RotationStage",
}
GETTER_PROPS = COMMON_PROPS | {"Rack", "ParameterKey", "Version"}
SSM_KEY_ATTRS = {
    "CACertSSMKey",
    "CAKeySSMKey",
    "ServerCertSSMKey",
    "ServerKeySSMKey",
    "CertSSMKey",
    "KeySSMKey",
}
GENERATOR_ATTRS = SSM_KEY_ATTRS | {
    "CACertificate",
    "CAFingerprint",
    "TrustedCAFingerprints",
    "CANotAfter",
    "Action",
}
GETTER_ATTRS = {"Value"}
KEY_ALGORITHMS = {"RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"}
# What a local invoke points the function at: an SSM endpoint, a CA for the response receiver.
LOCAL_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SSM", "DOCKER_TLS_RESPONSE_CA_BUNDLE")

Template = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Loading and walking
# --------------------------------------------------------------------------------------------


def load(text: str) -> Template:
    """Decode CloudFormation YAML (short-form intrinsics included) into plain dicts/lists."""
    tpl, matches = cfnlint_decode.decode_str(text)
    assert not matches, f"template does not decode: {matches}"
    return _plain(tpl)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


@pytest.fixture(scope="module")
def template() -> Template:
    return load(TEMPLATE.read_text(encoding="utf-8"))


def resources(tpl: Template, rtype: str | None = None) -> dict[str, dict[str, Any]]:
    res = tpl.get("Resources", {})
    return {k: v for k, v in res.items() if rtype is None or v.get("Type") == rtype}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def getatts(node: Any) -> Iterator[tuple[str, str]]:
    """Every Fn::GetAtt (list or dotted string form) and ${X.Y} in Fn::Sub below node."""
    for n in walk(node):
        if not isinstance(n, dict):
            continue
        if "Fn::GetAtt" in n:
            ga = n["Fn::GetAtt"]
            parts = ga if isinstance(ga, list) else str(ga).split(".", 1)
            yield str(parts[0]), str(parts[1])
        if "Fn::Sub" in n:
            sub = n["Fn::Sub"]
            text = sub[0] if isinstance(sub, list) else sub
            for m in re.finditer(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}", str(text)):
                yield m.group(1), m.group(2)


def as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def arn_text(x: Any) -> str:
    """A Resource entry as text: plain strings and Fn::Sub strings; anything else is repr'd."""
    if isinstance(x, str):
        return x
    if isinstance(x, dict) and set(x) == {"Fn::Sub"} and isinstance(x["Fn::Sub"], str):
        return x["Fn::Sub"]
    return repr(x)


def function(tpl: Template) -> dict[str, Any]:
    res = resources(tpl)
    assert FUNCTION_ID in res, f"no {FUNCTION_ID} resource"
    fn = res[FUNCTION_ID]
    assert fn.get("Type") == "AWS::Serverless::Function", fn.get("Type")
    return fn


def role_id(tpl: Template) -> str:
    role = function(tpl)["Properties"].get("Role")
    assert isinstance(role, dict), f"function Role is {role!r}"
    assert "Fn::GetAtt" in role, f"function Role is {role!r}"
    rid = role["Fn::GetAtt"][0]
    assert resources(tpl).get(rid, {}).get("Type") == "AWS::IAM::Role", rid
    return str(rid)


def statements(tpl: Template) -> list[tuple[dict[str, Any], str | None]]:
    """All IAM statements granted to the function, with the Fn::If condition guarding each."""
    rid = role_id(tpl)
    docs: list[Any] = []
    for p in as_list(resources(tpl)[rid]["Properties"].get("Policies", [])):
        docs.append(p["PolicyDocument"])
    for r in resources(tpl).values():
        props = r.get("Properties", {})
        if r.get("Type") == "AWS::IAM::RolePolicy" and props.get("RoleName") == {"Ref": rid}:
            docs.append(props["PolicyDocument"])
        if r.get("Type") == "AWS::IAM::Policy" and {"Ref": rid} in as_list(props.get("Roles")):
            docs.append(props["PolicyDocument"])
    # SAM-style policies on the function itself count too, if someone adds them.
    for p in as_list(function(tpl)["Properties"].get("Policies", [])):
        if isinstance(p, dict) and "Statement" in p:
            docs.append(p)
    out: list[tuple[dict[str, Any], str | None]] = []
    for doc in docs:
        for st in as_list(doc["Statement"]):
            if isinstance(st, dict) and "Fn::If" in st:
                cond, yes, no = st["Fn::If"]
                for branch in (yes, no):
                    if branch != {"Ref": "AWS::NoValue"}:
                        out.append((branch, cond))
            else:
                out.append((st, None))
    return out


def actions(st: dict[str, Any]) -> set[str]:
    assert "NotAction" not in st, f"NotAction in {st}"
    return {str(a) for a in as_list(st.get("Action", []))}


def touches(st: dict[str, Any], service: str) -> bool:
    return any(a == "*" or a.lower().startswith(service + ":") for a in actions(st))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_function(tpl: Template) -> None:
    fn = function(tpl)
    props = fn["Properties"]
    m = re.fullmatch(r"python3\.(\d+)", str(props.get("Runtime")))
    assert m, f"Runtime {props.get('Runtime')!r} is not Python 3"
    assert int(m.group(1)) >= 11, f"Runtime {props.get('Runtime')!r} is older than python3.11"
    # The architecture is a parameter (arm64 by default) so that sam local invoke runs on an
    # x86_64 host; the build reads the resolved value to pick the wheels.
    assert props.get("Architectures") == [{"Ref": "Architecture"}], props.get("Architectures")
    parameter = tpl["Parameters"]["Architecture"]
    assert parameter.get("Default") == "arm64", parameter
    assert set(parameter.get("AllowedValues", [])) == {"arm64", "x86_64"}, parameter
    assert int(props.get("Timeout", 3)) > 60, "Timeout must leave room for RSA-4096 rotations"
    assert int(props.get("MemorySize", 128)) >= 512, "MemorySize too small for RSA keygen"
    assert props.get("Handler") == "handler.app.lambda_handler", props.get("Handler")
    assert props.get("CodeUri") == ".", props.get("CodeUri")
    assert fn.get("Metadata", {}).get("BuildMethod") == "makefile", fn.get("Metadata")
    assert "VpcConfig" not in props, "the function must reach S3 and SSM without a VPC"
    # A retried event could act after CloudFormation had its answer and rolled back.
    retries = props.get("EventInvokeConfig", {}).get("MaximumRetryAttempts")
    assert retries == 0, f"asynchronous retries must be off, got {retries!r}"
    env = props.get("Environment", {}).get("Variables", {})
    assert env.get("LOG_LEVEL") == "INFO", env
    # Declared so `sam local invoke --env-vars` may set them, empty (unset) when deployed.
    for name in LOCAL_ENDPOINT_VARIABLES:
        assert name in env, f"{name} is not declared: --env-vars could not set it"
        assert env[name] == "", f"{name} must be empty when deployed, got {env[name]!r}"
    assert not any("POWERTOOLS" in k for k in env), env


def check_ssm_policy(tpl: Template) -> None:
    ssm = [st for st, _ in statements(tpl) if touches(st, "ssm")]
    assert ssm, "no SSM statement"
    granted: set[str] = set()
    for st in ssm:
        assert st.get("Effect") == "Allow", st
        assert "NotResource" not in st, st
        res = [arn_text(r) for r in as_list(st.get("Resource"))]
        for r in res:
            assert r in BUNDLE_ARNS | {LEGACY_ARN}, f"SSM resource {r!r} is not an exact suffix"
        assert actions(st) <= SSM_ACTIONS, f"unexpected actions {actions(st) - SSM_ACTIONS}"
        if set(res) & BUNDLE_ARNS:
            assert actions(st) == SSM_ACTIONS, f"bundle statement lacks {SSM_ACTIONS - actions(st)}"
        granted |= set(res)
    assert granted == BUNDLE_ARNS | {LEGACY_ARN}, f"missing {BUNDLE_ARNS | {LEGACY_ARN} - granted}"
    assert len(granted & BUNDLE_ARNS) == 10  # one GetParameters call reads at most ten names


def check_version_track(tpl: Template) -> None:
    legacy = [
        st
        for st, _ in statements(tpl)
        if LEGACY_ARN in {arn_text(r) for r in as_list(st.get("Resource"))}
    ]
    assert legacy, "no statement for the legacy version-track parameter"
    for st in legacy:
        acts = actions(st)
        assert "ssm:PutParameter" not in acts, "version-track must never be written"
        assert "ssm:*" not in acts, "version-track must never be written"
        assert acts == LEGACY_ACTIONS, f"version-track actions {sorted(acts)}"


def check_kms(tpl: Template) -> None:
    every = [(st, cond) for st, cond in statements(tpl) if touches(st, "kms")]
    any_key = [st for st, _ in every if st.get("Resource") == "*"]
    kms = [(st, cond) for st, cond in every if st.get("Resource") != "*"]
    assert kms, "no KMS statement for the customer-managed key"
    # Reading the rack's keys under whatever key they were written with: Decrypt alone, through
    # SSM alone, for this rack's key parameters alone.
    assert len(any_key) == 1, f"{len(any_key)} statements on every KMS key"
    (st,) = any_key
    assert st.get("Effect") == "Allow", st
    assert actions(st) == {"kms:Decrypt"}, actions(st)
    condition = st.get("Condition", {})
    assert set(condition) == {"StringEquals", "StringLike"}, condition
    via = condition["StringEquals"]
    assert via == {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}, via
    context = condition["StringLike"]
    assert set(context) == {"kms:EncryptionContext:PARAMETER_ARN"}, context
    arns = {arn_text(a) for a in as_list(context["kms:EncryptionContext:PARAMETER_ARN"])}
    assert arns == {RACK_PREFIX + suffix for suffix in KEY_SUFFIXES}, arns
    conds = tpl.get("Conditions", {})
    for st, cond in kms:
        assert cond is not None, "KMS statement is not conditional"
        assert cond in conds, cond
        assert {"Ref": "KmsKeyArn"} in walk(conds[cond]), f"{cond} does not test KmsKeyArn"
        assert st.get("Effect") == "Allow", st
        assert actions(st) == KMS_ACTIONS, actions(st)
        assert st.get("Resource") == {"Ref": "KmsKeyArn"}, st.get("Resource")
        via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        assert via == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}, f"kms:ViaService {via!r}"
    assert tpl["Parameters"]["KmsKeyArn"].get("Default") == ""
    for gen in resources(tpl, GENERATOR_TYPE).values():
        kms_id = gen["Properties"].get("KmsKeyId")
        want = {"Fn::If": [kms[0][1], {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
        assert kms_id == want, f"generator KmsKeyId {kms_id!r}, want {want!r}"


def check_service_timeouts(tpl: Template) -> None:
    timeout = int(function(tpl)["Properties"]["Timeout"])
    custom = {
        k: v
        for k, v in resources(tpl).items()
        if str(v.get("Type")).startswith("Custom::")
        or v.get("Type") == "AWS::CloudFormation::CustomResource"
    }
    assert len(custom) >= 4, f"expected a generator and three getters, got {sorted(custom)}"
    for name, res in custom.items():
        props = res.get("Properties", {})
        st = props.get("ServiceTimeout")
        assert isinstance(st, int), f"{name}: ServiceTimeout {st!r}"
        assert timeout < st <= 3600, f"{name}: ServiceTimeout {st} vs function timeout {timeout}"
        assert props.get("ServiceToken") == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}, name


def check_custom_properties(tpl: Template) -> None:
    gens = resources(tpl, GENERATOR_TYPE)
    getters = resources(tpl, GETTER_TYPE)
    assert len(gens) == 1, sorted(gens)
    assert len(getters) >= 3, sorted(getters)
    for name, res in gens.items():
        props = set(res["Properties"])
        assert props <= GENERATOR_PROPS, f"{name}: unknown properties {props - GENERATOR_PROPS}"
        assert {"Rack", "Version"} <= props
    for name, res in getters.items():
        props = set(res["Properties"])
        assert props <= GETTER_PROPS, f"{name}: unknown properties {props - GETTER_PROPS}"
        assert {"Rack", "ParameterKey", "Version"} <= props, name
    algo = tpl["Parameters"]["KeyAlgorithm"]
    assert set(algo["AllowedValues"]) == KEY_ALGORITHMS, algo["AllowedValues"]
    assert algo["Default"] == "RSA-2048", algo["Default"]


def check_attributes(tpl: Template) -> None:
    gens = set(resources(tpl, GENERATOR_TYPE))
    getters = resources(tpl, GETTER_TYPE)
    for name, res in getters.items():
        key = res["Properties"]["ParameterKey"]
        assert isinstance(key, dict), f"{name}: ParameterKey {key!r}"
        assert "Fn::GetAtt" in key, f"{name}: ParameterKey {key!r}"
        target, attr = key["Fn::GetAtt"]
        assert target in gens, f"{name}: ParameterKey from {target}"
        assert attr in SSM_KEY_ATTRS, f"{name}: ParameterKey from {attr}, not a parameter name"
    keys = {res["Properties"]["ParameterKey"]["Fn::GetAtt"][1] for res in getters.values()}
    assert {"CACertSSMKey", "ServerCertSSMKey", "ServerKeySSMKey"} <= keys, keys
    for target, attr in getatts(tpl):
        if target in gens:
            assert attr in GENERATOR_ATTRS, f"{target}.{attr} is not in docs/DESIGN.md §1"
        if target in getters:
            assert attr in GETTER_ATTRS, f"{target}.{attr} is not in docs/DESIGN.md §1"


def check_log_group(tpl: Template) -> None:
    groups = resources(tpl, "AWS::Logs::LogGroup")
    assert groups, "no log group"
    fn_props = function(tpl)["Properties"]
    default_name = {"Fn::Sub": f"/aws/lambda/${{{FUNCTION_ID}}}"}
    ours = [
        k
        for k, g in groups.items()
        if g["Properties"].get("LogGroupName") == default_name
        or fn_props.get("LoggingConfig", {}).get("LogGroup") == {"Ref": k}
    ]
    assert ours, "no log group is the function's"
    for k in ours:
        ret = groups[k]["Properties"].get("RetentionInDays")
        assert ret is not None, f"{k} has no RetentionInDays"
        if isinstance(ret, dict):
            param = tpl["Parameters"][ret["Ref"]]
            assert int(param["Default"]) == 30, param
        else:
            assert int(ret) > 0


def check_consumer(tpl: Template) -> None:
    lts = resources(tpl, "AWS::EC2::LaunchTemplate")
    assert lts, "no example launch template"
    for name, lt in lts.items():
        data = lt["Properties"]["LaunchTemplateData"]
        image = tpl["Parameters"][data["ImageId"]["Ref"]]
        assert image["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", name
        assert image["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-"), name
        script, variables = data["UserData"]["Fn::Base64"]["Fn::Sub"]
        for path in ("/etc/ca.pem", "/etc/cert.pem", "/etc/key.pem"):
            assert re.search(r"base64 -d > " + re.escape(path), script), f"{name}: {path}"
        assert re.search(r"umask 077;[^\n]*> /etc/key\.pem", script), f"{name}: key mode"
        assert "chmod 0600 /etc/key.pem" in script, name
        for flag in (
            "--tlsverify",
            "--tlscacert=/etc/ca.pem",
            "--tlscert=/etc/cert.pem",
            "--tlskey=/etc/key.pem",
            "-H=0.0.0.0:2376",
            "-H unix:///var/run/docker.sock",
        ):
            assert flag in script, f"{name}: dockerd lacks {flag}"
        assert {v["Fn::GetAtt"][1] for v in variables.values()} == {"Value"}, variables


def check_outputs(tpl: Template) -> None:
    gens = set(resources(tpl, GENERATOR_TYPE))
    exposed = {attr for target, attr in getatts(tpl.get("Outputs", {})) if target in gens}
    wanted = SSM_KEY_ATTRS | {"CAFingerprint", "CANotAfter", "Action"}
    assert wanted <= exposed, f"outputs lack {wanted - exposed}"
    # Private key material never goes into Outputs (getters of keys are NoEcho; outputs not).
    getters = set(resources(tpl, GETTER_TYPE))
    leaked = {t for t, _ in getatts(tpl.get("Outputs", {})) if t in getters}
    assert not leaked, f"outputs expose getter values {leaked}"


CHECKS: dict[str, Callable[[Template], None]] = {
    "function": check_function,
    "ssm_policy": check_ssm_policy,
    "version_track": check_version_track,
    "kms": check_kms,
    "service_timeouts": check_service_timeouts,
    "custom_properties": check_custom_properties,
    "attributes": check_attributes,
    "log_group": check_log_group,
    "consumer": check_consumer,
    "outputs": check_outputs,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_template(template: Template, name: str) -> None:
    CHECKS[name](template)


# --------------------------------------------------------------------------------------------
# cfn-lint
# --------------------------------------------------------------------------------------------


# cfn-lint 1.x has no ``python -m cfnlint``; call its console-script entry point with this
# interpreter so the test does not depend on PATH.
CFN_LINT = "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; main()"


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CFN_LINT, "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_cfn_lint_clean() -> None:
    # Any match (error 2, warning 4, informational 8) makes the exit code non-zero.
    proc = cfn_lint(TEMPLATE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("MemorySize: 1024", "MemorySize: 64", "E3034"),  # below Lambda's 128 MB minimum
        (  # redundant DependsOn: a warning, exit code 4
            "DependsOn: [DockerTlsLogGroup, DockerTlsLogsPolicy]",
            "DependsOn: [DockerTlsLogGroup, DockerTlsLogsPolicy, DockerTlsFunction]",
            "W3005",
        ),
    ],
    ids=["error", "warning"],
)
def test_cfn_lint_fails_on_findings(tmp_path: Path, old: str, new: str, rule: str) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "template.yaml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    proc = cfn_lint(bad)
    assert rule in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode != 0


# --------------------------------------------------------------------------------------------
# Every check can fail
# --------------------------------------------------------------------------------------------


def _fn(t: Template) -> dict[str, Any]:
    return t["Resources"][FUNCTION_ID]["Properties"]


def _ssm_doc(t: Template) -> list[Any]:
    role = t["Resources"][role_id(t)]["Properties"]
    for p in role["Policies"]:
        if any(
            touches(s, "ssm")
            for s in as_list(p["PolicyDocument"]["Statement"])
            if "Fn::If" not in s
        ):
            return p["PolicyDocument"]["Statement"]
    raise AssertionError("no SSM policy document")


def _rack_doc(t: Template) -> list[Any]:
    return t["Resources"]["DockerTlsRackPolicy"]["Properties"]["PolicyDocument"]["Statement"]


def _stmt(t: Template, arn: str) -> dict[str, Any]:
    for s in [*_ssm_doc(t), *_rack_doc(t)]:
        if "Fn::If" not in s and arn in {arn_text(r) for r in as_list(s["Resource"])}:
            return s
    raise AssertionError(arn)


def _any_key(t: Template) -> dict[str, Any]:
    return next(s for s in _rack_doc(t) if s.get("Resource") == "*")


def _kms_index(t: Template) -> int:
    return next(i for i, s in enumerate(_ssm_doc(t)) if "Fn::If" in s)


def _kms(t: Template) -> dict[str, Any]:
    return _ssm_doc(t)[_kms_index(t)]["Fn::If"][1]


def _getter(t: Template) -> dict[str, Any]:
    return next(iter(resources(t, GETTER_TYPE).values()))["Properties"]


def _gen(t: Template) -> dict[str, Any]:
    return next(iter(resources(t, GENERATOR_TYPE).values()))["Properties"]


def _log_group(t: Template) -> dict[str, Any]:
    return next(iter(resources(t, "AWS::Logs::LogGroup").values()))["Properties"]


def _userdata(t: Template) -> list[Any]:
    lt = next(iter(resources(t, "AWS::EC2::LaunchTemplate").values()))
    return lt["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]


def _first_bundle_arn(t: Template) -> str:
    return ARN_PREFIX + BUNDLE_SUFFIXES[0]


MUTATIONS: list[tuple[str, str, Callable[[Template], None]]] = [
    ("function", "old-runtime", lambda t: _fn(t).update(Runtime="python3.10")),
    ("function", "node-runtime", lambda t: _fn(t).update(Runtime="nodejs22.x")),
    ("function", "x86", lambda t: _fn(t).update(Architectures=["x86_64"])),
    ("function", "x86-default", lambda t: t["Parameters"]["Architecture"].update(Default="x86_64")),
    (
        "function",
        "endpoint-undeclared",
        lambda t: _fn(t)["Environment"]["Variables"].pop("AWS_ENDPOINT_URL_SSM"),
    ),
    (
        "function",
        "endpoint-set",
        lambda t: _fn(t)["Environment"]["Variables"].update(
            AWS_ENDPOINT_URL_SSM="http://127.0.0.1:5000"
        ),
    ),
    ("function", "short-timeout", lambda t: _fn(t).update(Timeout=30)),
    ("function", "small-memory", lambda t: _fn(t).update(MemorySize=256)),
    ("function", "handler", lambda t: _fn(t).update(Handler="app.lambda_handler")),
    ("function", "build", lambda t: t["Resources"][FUNCTION_ID].pop("Metadata")),
    ("function", "vpc", lambda t: _fn(t).update(VpcConfig={"SubnetIds": ["s"]})),
    ("function", "retries", lambda t: _fn(t).pop("EventInvokeConfig")),
    (
        "function",
        "two-retries",
        lambda t: _fn(t)["EventInvokeConfig"].update(MaximumRetryAttempts=2),
    ),
    ("ssm_policy", "star", lambda t: _stmt(t, _first_bundle_arn(t)).update(Resource="*")),
    (
        "ssm_policy",
        "all-params",
        lambda t: _stmt(t, _first_bundle_arn(t))["Resource"].append({"Fn::Sub": ARN_PREFIX}),
    ),
    ("ssm_policy", "six", lambda t: _stmt(t, _first_bundle_arn(t))["Resource"].pop()),
    (
        "ssm_policy",
        "extra-stmt",
        lambda t: _ssm_doc(t).append(
            {"Effect": "Allow", "Action": "ssm:GetParametersByPath", "Resource": "*"}
        ),
    ),
    (
        "ssm_policy",
        "no-delete",
        lambda t: _stmt(t, _first_bundle_arn(t)).update(
            Action=sorted(SSM_ACTIONS - {"ssm:DeleteParameters"})
        ),
    ),
    (
        "ssm_policy",
        "unused-call",
        lambda t: _stmt(t, _first_bundle_arn(t))["Action"].append("ssm:GetParameter"),
    ),
    ("ssm_policy", "no-owner", lambda t: _stmt(t, _first_bundle_arn(t))["Resource"].pop()),
    (
        "version_track",
        "put",
        lambda t: _stmt(t, LEGACY_ARN)["Action"].append("ssm:PutParameter"),
    ),
    ("version_track", "missing", lambda t: _rack_doc(t).remove(_stmt(t, LEGACY_ARN))),
    (
        "version_track",
        "every-rack",
        lambda t: _stmt(t, LEGACY_ARN).update(Resource={"Fn::Sub": ARN_PREFIX + LEGACY_SUFFIX}),
    ),
    (
        "kms",
        "unconditional",
        lambda t: _ssm_doc(t).__setitem__(_kms_index(t), _kms(t)),
    ),
    ("kms", "no-via", lambda t: _kms(t).pop("Condition")),
    ("kms", "any-key", lambda t: _kms(t).update(Resource="*")),
    ("kms", "generator", lambda t: _gen(t).pop("KmsKeyId")),
    ("kms", "any-key-not-via-ssm", lambda t: _any_key(t)["Condition"].pop("StringEquals")),
    ("kms", "any-key-any-parameter", lambda t: _any_key(t)["Condition"].pop("StringLike")),
    (
        "kms",
        "any-key-every-rack",
        lambda t: _any_key(t)["Condition"]["StringLike"].update(
            {"kms:EncryptionContext:PARAMETER_ARN": {"Fn::Sub": ARN_PREFIX + "-docker-tls-ca-key"}}
        ),
    ),
    ("kms", "any-key-encrypt", lambda t: _any_key(t).update(Action=["kms:Decrypt", "kms:Encrypt"])),
    ("kms", "any-key-missing", lambda t: _rack_doc(t).remove(_any_key(t))),
    ("service_timeouts", "missing", lambda t: _getter(t).pop("ServiceTimeout")),
    ("service_timeouts", "too-short", lambda t: _gen(t).update(ServiceTimeout=60)),
    ("custom_properties", "unknown", lambda t: _gen(t).update(ValidityYears="1")),
    ("custom_properties", "getter-extra", lambda t: _getter(t).update(KeyAlgorithm="x")),
    (
        "attributes",
        "bad-attr",
        lambda t: _getter(t).update(ParameterKey={"Fn::GetAtt": ["DockerTLS", "CAKey"]}),
    ),
    (
        "attributes",
        "not-a-name",
        lambda t: _getter(t).update(ParameterKey={"Fn::GetAtt": ["DockerTLS", "CACertificate"]}),
    ),
    (
        "attributes",
        "output",
        lambda t: t["Outputs"].update(X={"Value": {"Fn::GetAtt": ["DockerTLS", "ServerKey"]}}),
    ),
    ("log_group", "no-retention", lambda t: _log_group(t).pop("RetentionInDays")),
    ("log_group", "other-name", lambda t: _log_group(t).update(LogGroupName="x")),
    (
        "consumer",
        "tls-flag",
        lambda t: _userdata(t).__setitem__(0, _userdata(t)[0].replace("--tlsverify ", "")),
    ),
    (
        "consumer",
        "key-mode",
        lambda t: _userdata(t).__setitem__(0, _userdata(t)[0].replace("chmod 0600", "chmod 0644")),
    ),
    ("outputs", "no-action", lambda t: t["Outputs"].pop("Action")),
    (
        "outputs",
        "key-value",
        lambda t: t["Outputs"].update(K={"Value": {"Fn::GetAtt": ["DockerTLSServerKey", "Value"]}}),
    ),
]


@pytest.mark.parametrize(
    ("check", "mutate"),
    [(c, m) for c, _, m in MUTATIONS],
    ids=[f"{c}-{i}" for c, i, _ in MUTATIONS],
)
def test_check_catches(template: Template, check: str, mutate: Callable[[Template], None]) -> None:
    broken = copy.deepcopy(template)
    mutate(broken)
    assert broken != template
    with pytest.raises(AssertionError):
        CHECKS[check](broken)


def test_every_check_has_a_mutation() -> None:
    assert {c for c, _, _ in MUTATIONS} == set(CHECKS)


# --------------------------------------------------------------------------------------------
# The declared-but-empty endpoint variables change nothing once deployed
# --------------------------------------------------------------------------------------------


def test_an_empty_ssm_endpoint_variable_means_the_regions_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handler.store import default_client

    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "")
    assert default_client().meta.endpoint_url == "https://ssm.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5000")
    assert default_client().meta.endpoint_url == "http://127.0.0.1:5000"


def test_an_empty_response_ca_variable_means_the_system_trust_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    from handler import cfn

    seen: list[str | None] = []
    real = ssl.create_default_context

    def spy(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        seen.append(cafile)
        return real(*args, cafile=cafile, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", spy)
    monkeypatch.setenv(cfn.RESPONSE_CA_BUNDLE_ENV, "")
    # Port 9 on loopback: refused at once, after the TLS context was made.
    cfn.send_response("https://127.0.0.1:9/r", {"Status": "SUCCESS"}, attempts=1)
    assert seen == [None]


# --------------------------------------------------------------------------------------------
# The example's server names: every instance's private DNS name, in every region
# --------------------------------------------------------------------------------------------


def resolve(node: Any, tpl: Template, parameters: dict[str, str], region: str) -> Any:
    """Evaluate the intrinsic functions the generator's properties use, as CloudFormation
    would for a stack in ``region`` with ``parameters`` (defaults for the rest)."""
    values = (
        {name: str(spec.get("Default", "")) for name, spec in tpl["Parameters"].items()}
        | parameters
        | {"AWS::Region": region, "AWS::StackName": "stack"}
    )

    def condition(name: str) -> bool:
        return bool(evaluate(tpl["Conditions"][name]))

    def evaluate(x: Any) -> Any:
        if isinstance(x, list):
            return [evaluate(item) for item in x]
        if not isinstance(x, dict):
            return x
        ((function, argument),) = x.items()
        if function == "Ref":
            return values[argument]
        if function == "Fn::Equals":
            left, right = evaluate(argument)
            return left == right
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Condition":
            return condition(argument)
        if function == "Fn::If":
            name, then, otherwise = argument
            return evaluate(then if condition(name) else otherwise)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(evaluate(items))
        if function == "Fn::Sub":
            text, names = (argument, {}) if isinstance(argument, str) else argument
            local = values | {key: evaluate(value) for key, value in names.items()}
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(local[m.group(1)]), text)
        raise AssertionError(f"{function} is not evaluated here")

    return evaluate(node)


@pytest.mark.parametrize(
    ("region", "wildcards"),
    [
        ("us-east-1", ["*.ec2.internal", "*.us-east-1.compute.internal"]),
        ("eu-west-1", ["*.eu-west-1.compute.internal"]),
        ("ap-southeast-2", ["*.ap-southeast-2.compute.internal"]),
    ],
)
@pytest.mark.parametrize("additional", ["", "docker.rack.example,10.0.0.5"])
def test_the_example_names_every_instance_by_its_private_dns_name(
    template: Template, region: str, wildcards: list[str], additional: str
) -> None:
    import datetime as dt

    from handler.properties import parse_generator

    names = resolve(
        _gen(template)["ServerSubjectAltNames"],
        template,
        {"AdditionalServerNames": additional},
        region,
    )
    parsed = parse_generator({"Rack": "r", "ServerSubjectAltNames": names}, dt.datetime.now(dt.UTC))
    expected = ["localhost", "127.0.0.1", *wildcards, *filter(None, additional.split(","))]
    assert list(parsed.server_subject_alt_names) == expected


# --------------------------------------------------------------------------------------------
# The template's own IAM policy, evaluated: a KMS key change updates and rolls back
# --------------------------------------------------------------------------------------------

ACCOUNT = "123456789012"
RACK_HEX = b"my-rack".hex()
OTHER_HEX = b"other-rack".hex()
KEY_1 = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-1111-1111-1111-111111111111"
KEY_2 = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/22222222-2222-2222-2222-222222222222"
VIA_SSM = {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}


def parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/{name}"


def granted(tpl: Template, kms_key_arn: str) -> list[dict[str, Any]]:
    """Every statement the function's role holds for a stack with ``KmsKeyArn``, its intrinsic
    functions resolved as CloudFormation would (the generator's id is hex of the Rack)."""
    values = {
        "KmsKeyArn": kms_key_arn,
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::NoValue": "",
        "DockerTLS": RACK_HEX,
    }
    docs = [p["PolicyDocument"] for p in resources(tpl)[role_id(tpl)]["Properties"]["Policies"]]
    docs.append(resources(tpl)["DockerTlsRackPolicy"]["Properties"]["PolicyDocument"])

    def evaluate(node: Any) -> Any:
        if isinstance(node, list):
            return [evaluate(item) for item in node]
        if isinstance(node, dict):
            if len(node) == 1 and "Fn::If" in node:
                name, then, otherwise = node["Fn::If"]
                chosen = resolve({"Condition": name}, tpl, values, "us-east-1")
                return evaluate(then if chosen else otherwise)
            if len(node) == 1 and next(iter(node)) in {"Ref", "Fn::Sub"}:
                return resolve(node, tpl, values, "us-east-1")
            return {key: evaluate(value) for key, value in node.items()}
        return node

    out = []
    for doc in docs:
        for st in as_list(doc["Statement"]):
            value = evaluate(st)
            if value:  # an Fn::If that chose AWS::NoValue
                out.append(value)
    return out


def allows(
    statements_: list[dict[str, Any]], action: str, resource: str, context: dict[str, str]
) -> bool:
    """IAM's answer for one request, for the Allow statements and operators the template uses
    (wildcards as IAM matches them: ``*`` spans any characters, ``:`` and ``/`` included)."""
    import fnmatch

    def condition_holds(st: dict[str, Any]) -> bool:
        for operator, tests in st.get("Condition", {}).items():
            for key, wanted in tests.items():
                if key not in context:
                    return False
                options = [str(w) for w in as_list(wanted)]
                if operator == "StringEquals" and context[key] not in options:
                    return False
                if operator == "StringLike" and not any(
                    fnmatch.fnmatchcase(context[key], w) for w in options
                ):
                    return False
                if operator not in {"StringEquals", "StringLike"}:
                    raise AssertionError(f"{operator} is not evaluated here")
        return True

    return any(
        st["Effect"] == "Allow"
        and action in as_list(st["Action"])
        and any(fnmatch.fnmatchcase(resource, str(r)) for r in as_list(st["Resource"]))
        and condition_holds(st)
        for st in statements_
    )


def ssm_decrypts(statements_: list[dict[str, Any]], kms_key: str, parameter: str) -> bool:
    """Whether SSM, reading ``parameter`` WithDecryption for the function, may decrypt it
    with ``kms_key`` (SSM passes the parameter's ARN as encryption context)."""
    context = {**VIA_SSM, "kms:EncryptionContext:PARAMETER_ARN": parameter_arn(parameter)}
    return allows(statements_, "kms:Decrypt", kms_key, context)


@pytest.mark.parametrize(
    ("before", "after"),
    [(KEY_1, KEY_2), (KEY_2, KEY_1), (KEY_1, ""), ("", KEY_1)],
    ids=["key-to-key", "its-rollback", "key-to-default", "default-to-key"],
)
def test_a_kms_key_change_and_its_rollback_can_read_and_write_the_bundle(
    template: Template, before: str, after: str
) -> None:
    """CloudFormation updates the role before the generator (it depends on the role), and in a
    rollback the same way back: the generator then reads keys written under the key the role no
    longer names. The default key (alias/aws/ssm) needs no grant: its policy allows every
    principal of the account through SSM."""
    role = granted(template, after)
    for suffix in KEY_SUFFIXES:
        name = RACK_HEX + suffix
        if before:
            assert ssm_decrypts(role, before, name), f"cannot read {name} under the old key"
        if after:
            assert ssm_decrypts(role, after, name), f"cannot read {name} under the new key"
            for action in ("kms:Encrypt", "kms:GenerateDataKey"):
                assert allows(role, action, after, VIA_SSM), f"cannot write with {action}"
        assert allows(role, "ssm:GetParameters", parameter_arn(name), {})
        assert allows(role, "ssm:PutParameter", parameter_arn(name), {})


@pytest.mark.parametrize("kms_key_arn", [KEY_1, ""])
def test_the_role_decrypts_nothing_else(template: Template, kms_key_arn: str) -> None:
    role = granted(template, kms_key_arn)
    mine = RACK_HEX + "-docker-tls-ca-key"
    # Not outside SSM: a direct kms:Decrypt of the key with the parameter's context.
    direct = {"kms:EncryptionContext:PARAMETER_ARN": parameter_arn(mine)}
    assert not allows(role, "kms:Decrypt", KEY_2, direct)
    # Not another rack's keys under a key the role does not name, nor this rack's
    # certificates or any other parameter.
    assert not ssm_decrypts(role, KEY_2, OTHER_HEX + "-docker-tls-ca-key")
    assert not ssm_decrypts(role, KEY_2, RACK_HEX + "-docker-tls-ca-cert")
    assert not ssm_decrypts(role, KEY_2, "database-password")
    # Never encrypting with, or generating data keys under, a key it was not given.
    assert not allows(role, "kms:Encrypt", KEY_2, VIA_SSM)
    assert not allows(role, "kms:GenerateDataKey", KEY_2, VIA_SSM)


def test_the_role_makes_only_the_calls_the_function_makes(template: Template) -> None:
    role = granted(template, "")
    mine = parameter_arn(RACK_HEX + "-docker-tls-ca-key")
    for action in ("ssm:GetParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath"):
        assert not allows(role, action, mine, {}), action
    assert allows(role, "ssm:DeleteParameters", parameter_arn(RACK_HEX + "-version-track"), {})
    assert not allows(role, "ssm:GetParameters", parameter_arn(RACK_HEX + "-version-track"), {})
    assert not allows(role, "ssm:PutParameter", parameter_arn(RACK_HEX + "-version-track"), {})
    other_legacy = parameter_arn(OTHER_HEX + "-version-track")
    assert not allows(role, "ssm:DeleteParameters", other_legacy, {})
    assert not allows(role, "ssm:GetParameters", parameter_arn("database-password"), {})
