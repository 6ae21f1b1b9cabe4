#!/usr/bin/env bash
# Print the path of a CPython interpreter of the given minor version (e.g. 3.13), or exit 1.
#
#   scripts/find_python.sh 3.13
#
# Looks at pythonX.Y on PATH (a pyenv shim counts only if it really runs that version), then at
# pyenv's installed versions. Used for the Python 3.13 test run (make test-py313) and to compile
# the Lambda artifact's bytecode with the runtime's own version.
set -euo pipefail
want=${1:?usage: $0 X.Y}

runs_version() {
  [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]
}

candidates=()
if found=$(command -v "python$want" 2>/dev/null); then
  candidates+=("$found")
fi
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
if command -v pyenv >/dev/null 2>&1; then
  pyenv_root=$(pyenv root)
fi
# Newest patch release first.
while IFS= read -r dir; do
  candidates+=("$dir/bin/python$want")
done < <(ls -d "$pyenv_root/versions/$want".* 2>/dev/null | sort -V -r)

for candidate in "${candidates[@]}"; do
  if runs_version "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done
echo "no Python $want found (looked for python$want on PATH and under $pyenv_root/versions)" >&2
exit 1
