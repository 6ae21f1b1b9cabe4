#!/usr/bin/env bash
# Build the Lambda artifact into a directory: the handler/ package and its run-time
# dependencies (cryptography + cffi) as wheels for the function's runtime, python3.13
# on the function's architecture, with bytecode compiled by Python 3.13. boto3/botocore come
# with the Lambda runtime and are left out, as are tests/, devkit/ and the rest of the tree.
#
#   scripts/build_artifact.sh DIR        (or ARTIFACTS_DIR=DIR scripts/build_artifact.sh)
#
# The architecture (arm64 or x86_64) comes from, in order:
#   1. ARTIFACT_ARCHITECTURE, when set (refused when build.toml says otherwise);
#   2. `sam build`'s build.toml beside the build directory, which holds the function's
#      Architectures as resolved from --parameter-overrides (SAM passes a makefile build nothing
#      but ARTIFACTS_DIR, so this is the only place that says what the function will run on);
#   3. arm64, the template's default.
# ARTIFACT_PYTHON_VERSION overrides the Python version (the tests build one for the host).
#
# Bytecode: Lambda's /var/task is read-only, so modules without .pyc are compiled on every cold
# start (~45 ms measured in the runtime container, docs/BENCHMARKS.md). The .pyc files must come
# from the target's own minor version (a cpython-311 .pyc is ignored by 3.13); they are written
# in unchecked-hash mode, so the artifact's file times do not matter. Without such an
# interpreter (ARTIFACT_COMPILER, else scripts/find_python.sh) the artifact is built without
# bytecode and says so; with CI=true that is an error.
#
# Last, devkit/artifact_check.py reads every native file and wheel tag in DIR and fails the
# build when one is not for that architecture and Python.
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
python_version=${ARTIFACT_PYTHON_VERSION:-3.13}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# --- which architecture -------------------------------------------------------------------
# .aws-sam/build/<LogicalId> → .aws-sam/build.toml, the entry that lists <LogicalId>.
sam_architecture=$("$python" - "$(dirname "$(dirname "$dest")")/build.toml" "$(basename "$dest")" <<'PY'
import sys
import tomllib

path, function = sys.argv[1], sys.argv[2]
try:
    with open(path, "rb") as handle:
        definitions = tomllib.load(handle).get("function_build_definitions", {})
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(0)
for definition in definitions.values():
    if function in definition.get("functions", []):
        print(definition.get("architecture", ""))
        break
PY
)
architecture=${ARTIFACT_ARCHITECTURE:-}
source="ARTIFACT_ARCHITECTURE"
if [ -n "$architecture" ] && [ -n "$sam_architecture" ] && [ "$architecture" != "$sam_architecture" ]; then
  # The artifact would pass its own check and still be wrong for the function it ships in.
  echo "ARTIFACT_ARCHITECTURE=$architecture, but sam build resolved the function's Architecture" \
    "to $sam_architecture: an artifact for $architecture would fail on its first invoke. Unset" \
    "ARTIFACT_ARCHITECTURE or build with --parameter-overrides Architecture=$architecture." >&2
  exit 2
fi
if [ -z "$architecture" ] && [ -n "$sam_architecture" ]; then
  architecture=$sam_architecture
  source="sam build's build.toml"
fi
if [ -z "$architecture" ]; then
  architecture=arm64
  source="the template's default"
fi
case "$architecture" in
  arm64) platform=manylinux2014_aarch64 ;;
  x86_64) platform=manylinux2014_x86_64 ;;
  *)
    echo "architecture '$architecture' (from $source) is not arm64 or x86_64" >&2
    exit 2
    ;;
esac

# --- dependencies -------------------------------------------------------------------------
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

# --- the package itself, sources only -----------------------------------------------------
rm -rf "$dest/handler"
mkdir -p "$dest/handler"
(cd "$root/handler" && find . -name '*.py' -o -name 'py.typed') | while read -r file; do
  mkdir -p "$dest/handler/$(dirname "$file")"
  cp "$root/handler/$file" "$dest/handler/$file"
done

# --- bytecode -----------------------------------------------------------------------------
compiler=${ARTIFACT_COMPILER:-}
if [ -z "$compiler" ]; then
  compiler=$("$root/scripts/find_python.sh" "$python_version" 2>/dev/null) || compiler=""
fi
if [ -n "$compiler" ]; then
  "$compiler" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$dest" >/dev/null
  bytecode="bytecode by $("$compiler" -c 'import platform; print(platform.python_version())')"
elif [ "${CI:-}" = "true" ]; then
  echo "no Python $python_version to compile the artifact's bytecode with (CI=true)" >&2
  exit 1
else
  bytecode="NO bytecode: no Python $python_version here, so Lambda compiles every module at each cold start"
  echo "warning: $bytecode (set ARTIFACT_COMPILER or install Python $python_version)" >&2
fi

# --- the native code is for the target, or nothing is deployed -----------------------------
# Every ELF file's machine, every extension module's ABI tag and every wheel's tags, read from
# what is in the directory (a file left by an earlier build for another architecture counts):
# a mismatch would only show as Runtime.ImportModuleError on the first invoke.
if ! (cd "$root" && "$python" -m devkit.artifact_check "$dest" \
  --architecture "$architecture" --python "$python_version"); then
  echo "artifact: refused, not for python$python_version on $architecture (from $source)" >&2
  exit 1
fi

bytes=$(du -sb "$dest" | cut -f1)
files=$(find "$dest" -type f | wc -l)
echo "artifact: $dest: $files files, $bytes bytes ($((bytes / 1024 / 1024)) MiB unzipped)"
echo "artifact: python$python_version $architecture (from $source), $bytecode"
