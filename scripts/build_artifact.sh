#!/usr/bin/env bash
# Build the Lambda artifact into a directory: the handler/ package and its run-time
# dependencies (crhelper, cryptography + cffi) as wheels for the function's runtime,
# python3.13 on arm64. boto3/botocore come with the Lambda runtime and are left out, as are
# tests/, devkit/ and anything else in the repository.
#
#   scripts/build_artifact.sh DIR        (or ARTIFACTS_DIR=DIR scripts/build_artifact.sh)
#
# ARTIFACT_PLATFORM / ARTIFACT_PYTHON_VERSION override the target (the tests build one for the
# host too, to import it); the defaults match template.yaml's Runtime and Architectures.
#
# `sam build` (BuildMethod: makefile) runs `make build-DockerTlsFunction` with ARTIFACTS_DIR
# set, which calls this script. Needs python3 with pip and access to the package index.
set -euo pipefail

dest=${1:-${ARTIFACTS_DIR:-}}
if [ -z "$dest" ]; then
  echo "usage: $0 ARTIFACTS_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
platform=${ARTIFACT_PLATFORM:-manylinux2014_aarch64}
python_version=${ARTIFACT_PYTHON_VERSION:-3.13}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# The run-time requirements, from pyproject.toml (one source of truth), minus boto3.
mapfile -t requirements < <(cd "$root" && "$python" - <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as handle:
    for requirement in tomllib.load(handle)["project"]["dependencies"]:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name not in {"boto3", "botocore"}:
            print(requirement)
PY
)

"$python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --platform "$platform" --implementation cp --python-version "$python_version" \
  --only-binary=:all: --upgrade --target "$dest" "${requirements[@]}"

# Nothing the runtime provides or the function never runs.
rm -rf "$dest"/bin "$dest"/boto3 "$dest"/boto3-* "$dest"/botocore "$dest"/botocore-* \
  "$dest"/s3transfer "$dest"/s3transfer-* "$dest"/jmespath "$dest"/jmespath-* \
  "$dest"/dateutil "$dest"/python_dateutil-* "$dest"/urllib3 "$dest"/urllib3-* \
  "$dest"/six.py "$dest"/six-*
find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +

# The package itself, sources only.
rm -rf "$dest/handler"
mkdir -p "$dest/handler"
(cd "$root/handler" && find . -name '*.py' -o -name 'py.typed') | while read -r file; do
  mkdir -p "$dest/handler/$(dirname "$file")"
  cp "$root/handler/$file" "$dest/handler/$file"
done

bytes=$(du -sb "$dest" | cut -f1)
files=$(find "$dest" -type f | wc -l)
echo "artifact: $dest: $files files, $bytes bytes ($((bytes / 1024 / 1024)) MiB unzipped)"
