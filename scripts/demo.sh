#!/usr/bin/env bash
# Install opea-new, generate the default pipeline (ChatQnA-shaped: embedding →
# retriever → rerank → llm on the comps runtime, dataprep beside them), install
# and start it on 127.0.0.1, send one chat request through the megaservice, then
# upload a document of your own through dataprep and ask what only it says.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
WORK=${WORK:-$(mktemp -d /tmp/opea-new-demo.XXXXXX)}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check .
"$VENV/bin/opea-new" megaservice --defaults --output "$WORK/chatqna"
cd "$WORK/chatqna"
make install VENV=.venv   # the project's own venv, whatever VENV this script was given
# The same supervisor `make run` starts, run directly so the trap can stop it by its PID.
.venv/bin/python -m opea_new_runtime.run & run_pid=$!
trap 'kill -TERM "$run_pid" 2>/dev/null; wait "$run_pid" 2>/dev/null || true' EXIT
url=http://127.0.0.1:8888/v1/chatqna
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null http://127.0.0.1:8888/v1/health/ready 2>/dev/null && break
  kill -0 "$run_pid" 2>/dev/null || { echo "make run exited early" >&2; exit 1; }
  sleep 0.5
done
echo
echo "POST $url"
curl -fsS "$url" -H 'Content-Type: application/json' \
  -d '{"messages": "What is OPEA?", "stream": false}' | .venv/bin/python -m json.tool
ask() {
  curl -fsS "$url" -H 'Content-Type: application/json' \
    -d "{\"messages\": \"$1\", \"stream\": false}" | .venv/bin/python -c \
    'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])'
}
printf '# Zephyr\n\nThe Zephyr cluster has 48 nodes and runs in Oslo.\n' > "$WORK/zephyr.md"
echo
echo "POST http://127.0.0.1:6007/v1/dataprep/ingest  (files=@zephyr.md)"
curl -fsS http://127.0.0.1:6007/v1/dataprep/ingest -F "files=@$WORK/zephyr.md" | .venv/bin/python -m json.tool
echo
echo "POST $url  How many nodes does the Zephyr cluster have?"
ask "How many nodes does the Zephyr cluster have?"
echo
echo "The project is in $WORK/chatqna (your documents: data/vectors.db)"
