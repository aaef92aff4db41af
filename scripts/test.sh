#!/usr/bin/env bash
# Install opea-new the way users do (a plain, non-editable `pip install`), with its
# test tools, into .venv — then run every test tier. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow and not docker"` for the fast tier only.
#
# With no arguments (the whole run) the tiers run as two pytest processes side by
# side, each with its own temporary folders: the docker, update and e2e tiers
# (mostly waiting on builds, installs and servers) beside the others. Each prints
# its own summary; the run fails if either does.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ".[test]"
if [ "$#" -gt 0 ]; then
    exec "$VENV/bin/python" -m pytest "$@"
fi

WAITING_TIERS=(tests/docker tests/update tests/e2e)
OTHER_TIERS=(tests/unit tests/cli tests/templates tests/runtime tests/swapin tests/ui)
missing=$(comm -23 <(find tests -mindepth 1 -maxdepth 1 -type d ! -name __pycache__ ! -name specs | sort) \
                   <(printf '%s\n' "${WAITING_TIERS[@]}" "${OTHER_TIERS[@]}" | sort))
if [ -n "$missing" ]; then
    echo "scripts/test.sh: these test folders are in neither process: $missing" >&2
    exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/opea-new-tests-XXXXXX")
"$VENV/bin/python" -m pytest --basetemp="$scratch/waiting" --durations=15 "${WAITING_TIERS[@]}" \
    > "$scratch/waiting.log" 2>&1 &
waiting=$!
trap 'kill "$waiting" 2>/dev/null || true' INT TERM
other_status=0
"$VENV/bin/python" -m pytest --basetemp="$scratch/other" --durations=15 "${OTHER_TIERS[@]}" || other_status=$?
waiting_status=0
wait "$waiting" || waiting_status=$?
echo
echo "======== ${WAITING_TIERS[*]} (run beside the tiers above) ========"
cat "$scratch/waiting.log"
echo "scripts/test.sh: ${OTHER_TIERS[*]}: exit $other_status; ${WAITING_TIERS[*]}: exit $waiting_status"
[ "$other_status" -eq 0 ] && [ "$waiting_status" -eq 0 ]
