#!/usr/bin/env bash
# Install opea-new the way users do (a plain, non-editable `pip install`), with its
# test tools, into .venv — then run every test tier. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow and not docker"` for the fast tier only.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ".[test]"
exec "$VENV/bin/python" -m pytest "$@"
