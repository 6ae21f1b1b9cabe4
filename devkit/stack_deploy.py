"""What the stack engine deploys: the built artifact in the engine's S3, an AMI parameter in its
SSM, and ``template.yaml`` with the few substitutions the engine needs (:func:`for_engine`).

The artifact is the one ``sam build`` ships (``scripts/build_artifact.sh``), for Python 3.13 on
x86_64: the engine runs its Lambdas as subprocesses of its own Python 3.13 on this x86_64 host,
so an arm64 artifact's ``cryptography`` could not be imported.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cfnlint.decode as cfnlint_decode

from devkit.stack_engine import ROOT, StackEngine

TEMPLATE = ROOT / "template.yaml"
ARCHITECTURE = "x86_64"
BUCKET = "docker-tls-artifacts"
AMI_PARAMETER = "/docker-tls/engine/ami"
AMI = "ami-0123456789abcdef0"  # any well-formed id: no instance is ever launched


class DeployError(RuntimeError):
    """The artifact could not be built or the template could not be read."""


@dataclass(frozen=True)
class Code:
    """Where the function's zip lies in the engine's S3."""

    bucket: str
    key: str
    bytes: int


@dataclass(frozen=True)
class EngineTemplate:
    """A template body for the engine and the parameter values every stack of it is given."""

    body: str
    parameters: dict[str, str]


def build_artifact(directory: Path) -> Path:
    """Build the x86_64 Python 3.13 artifact into ``directory``/artifact and zip it; the zip."""
    artifact = directory / "artifact"
    env = {**os.environ, "ARTIFACT_ARCHITECTURE": ARCHITECTURE, "ARTIFACT_PYTHON_VERSION": "3.13"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "build_artifact.sh"), str(artifact)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise DeployError(f"scripts/build_artifact.sh failed:\n{result.stdout}{result.stderr}")
    archive = directory / "artifact.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(artifact.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(artifact).as_posix())
    return archive


def upload(engine: StackEngine, archive: Path) -> Code:
    """Put the zip into a bucket of the engine (what ``sam package`` does for AWS)."""
    s3 = engine.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = f"docker-tls/{archive.name}"
    s3.upload_file(str(archive), BUCKET, key)
    return Code(BUCKET, key, archive.stat().st_size)


def seed_ami(engine: StackEngine) -> str:
    """An AMI id parameter of our own in the engine's SSM; its name (see :func:`for_engine`)."""
    engine.client("ssm").put_parameter(
        Name=AMI_PARAMETER, Value=AMI, Type="String", DataType="aws:ec2:image", Overwrite=True
    )
    return AMI_PARAMETER


def read_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """``template.yaml`` as data, short-form intrinsics (``!Ref``…) in their long form."""
    template, problems = cfnlint_decode.decode_str(path.read_text(encoding="utf-8"))
    if problems or template is None:
        raise DeployError(f"{path}: {problems}")
    # cfn-lint's node types are dict/str subclasses: a JSON round trip makes plain data.
    data: dict[str, Any] = json.loads(json.dumps(template))
    return data


def for_engine(template: dict[str, Any], code: Code, ami_parameter: str) -> EngineTemplate:
    """The shipped template as the engine can run it. The only substitutions, each with why:

    1. ``DockerTlsFunction``'s ``CodeUri`` (``.``, built by ``sam build``) becomes
       ``{Bucket, Key}`` of the uploaded artifact: exactly what ``sam package`` writes into the
       template it deploys to AWS.
    2. ``AWS::IAM::RolePolicy`` (which MiniStack 1.5.33 lacks) becomes ``AWS::IAM::Policy`` with
       ``Roles: [<the RoleName>]``: the same inline policy on the same role, equally valid
       CloudFormation. (The engine enforces no IAM either way.)
    3. ``ImageId``'s default is AWS's public ``/aws/service/ami-amazon-linux-latest/…``
       parameter, which the engine does not hold: the stack is given the name of an
       ``aws:ec2:image`` parameter seeded in the engine's SSM (:func:`seed_ami`) instead. The
       parameter's type, ``AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>``, is kept, so the
       engine still resolves it.
    4. ``Architecture=x86_64``: the engine's Lambdas run on this x86_64 host, and the artifact
       is built for it.

    Nothing else changes: the custom resources, their properties, the getters' ``Version``
    joins, the ``DependsOn`` order, the launch template and the outputs are the shipped ones.
    """
    engine_template = copy.deepcopy(template)
    resources: dict[str, Any] = engine_template["Resources"]
    function = resources["DockerTlsFunction"]["Properties"]
    function["CodeUri"] = {"Bucket": code.bucket, "Key": code.key}
    for resource in resources.values():
        if resource.get("Type") == "AWS::IAM::RolePolicy":
            properties = resource["Properties"]
            resource["Type"] = "AWS::IAM::Policy"
            properties["Roles"] = [properties.pop("RoleName")]
    return EngineTemplate(
        body=json.dumps(engine_template),
        parameters={"ImageId": ami_parameter, "Architecture": ARCHITECTURE},
    )


def prepare(engine: StackEngine, work: Path, template: Path = TEMPLATE) -> EngineTemplate:
    """Build, upload and seed everything a stack of ``template`` needs in ``engine``."""
    work.mkdir(parents=True, exist_ok=True)
    code = upload(engine, build_artifact(work))
    return for_engine(read_template(template), code, seed_ami(engine))


FAILING_RESOURCE = "FailsAfterGenerator"


def with_failing_resource(body: str) -> str:
    """``body`` plus one custom resource that fails after everything else was created: its
    ``ServiceToken`` names a function that does not exist (CloudFormation fails such a resource
    on AWS too). A stack of it makes the generator run and then rolls back, so its Delete
    reaches the generator: a test's way to roll a stack back without touching its properties.
    Used by the tests and ``make stack-local`` only, never a substitution of the shipped
    template."""
    template = json.loads(body)
    template["Resources"][FAILING_RESOURCE] = {
        "Type": "Custom::FailsOnPurpose",
        "DependsOn": ["DockerHostLaunchTemplate"],
        "Properties": {
            "ServiceToken": {
                "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
                ":function:docker-tls-no-such-function"
            },
            "ServiceTimeout": 60,
        },
    }
    return json.dumps(template)
