#!/usr/bin/env bash
# Fuzz the live service against its own OpenAPI document with Schemathesis.
#
#   bash deploy/schemathesis.sh
#
# Installs schemathesis into .venv when missing, starts a fake CivitAI
# (deploy/fake_civitai.py) and `python -m service` on free 127.0.0.1 ports with
# temporary catalogs and models, waits for /ready, then runs `schemathesis run`
# against http://127.0.0.1:PORT/api/openapi.json with the API key. Only
# 127.0.0.1 is contacted. Everything started here is stopped on exit.
#
# The events stream (SSE) is left out: it never ends, so it cannot be fuzzed
# request by request; tests/test_openapi.py covers its place in the document.
#
# Environment knobs (all optional):
#   ST_MAX_EXAMPLES  test cases per operation and phase   (50)
#   ST_SEED          hypothesis seed                       (20261124)
#   ST_TIMEOUT_S     hard limit for the schemathesis run   (600)
#   ST_READY_S       seconds to wait for /ready            (60)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
SEED=${ST_SEED:-20261124}
RUN_TIMEOUT=${ST_TIMEOUT_S:-600}
READY_TIMEOUT=${ST_READY_S:-60}
EVENTS_PATH=/api/admin/models/civitai-map/events
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance

WORK=""
FAKE_PID=""
SERVICE_PID=""
PASSED=0
START=$(date +%s)

log() { printf '[schemathesis %3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

stop() {
    # stop PID: SIGTERM, wait up to 10 s, then SIGKILL.
    local pid=$1 waited=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    stop "$SERVICE_PID"
    stop "$FAKE_PID"
    if [ "$rc" != 0 ] && [ -n "$WORK" ] && [ -s "$WORK/service.log" ]; then
        log "service log (last lines):"
        tail -30 "$WORK/service.log" >&2
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$PASSED" = 1 ] && [ "$rc" = 0 ]; then
        echo "SCHEMATHESIS: PASS ($(($(date +%s) - START))s)"
    else
        [ "$rc" = 0 ] && rc=1
        echo "SCHEMATHESIS: FAIL (see the log above; exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -x "$PY" ] || die "no $PY; run 'make test' once to create .venv"
installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [ "$installed" != "$SCHEMATHESIS_VERSION" ]; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION into .venv (found: ${installed:-none})"
    "$PY" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION" >&2 || die "pip install schemathesis failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfy-catalog-schemathesis.XXXXXX")
CATALOGS=$WORK/catalogs
MODELS=$WORK/models
mkdir -p "$CATALOGS" "$MODELS/checkpoints" "$MODELS/loras"

# Catalogs with something in them: a file on disk and one missing, an entry with
# no model id or base model, a LoRA in each catalog (so promote and remove have work).
"$PY" - "$CATALOGS" "$MODELS" <<'PY'
import json, sys
from pathlib import Path

catalogs, models = Path(sys.argv[1]), Path(sys.argv[2])

def entry(version_id, file, dest, **extra):
    data = {"name": f"Model {version_id}", "file": file, "dest": dest, "source": "civitai",
            "civitai_version_id": version_id, "civitai_model_id": version_id * 10, "base_model": "SDXL 1.0", "tags": []}
    data.update(extra)
    return data

def catalog(*categories):
    return {"version": 1, "date": "2026-11-24 00:00", "categories": [
        {"id": cid, "name": cid.title(), "models": list(entries)} for cid, entries in categories]}

(catalogs / "models.json").write_text(json.dumps(catalog(
    ("checkpoints", [entry(101, "on_disk.safetensors", "checkpoints"),
                     entry(102, "missing.safetensors", "checkpoints", civitai_model_id=None, base_model=None)]),
    ("loras", [entry(103, "lora_103.safetensors", "loras")]),
)))
(catalogs / "loras.json").write_text(json.dumps(catalog(("sdxl_loras", [entry(201, "style.safetensors", "loras")]))))
(models / "checkpoints" / "on_disk.safetensors").write_bytes(b"x")
PY

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# status URL [KEY] -> prints the HTTP status (000 when unreachable)
status() {
    "$PY" - "$@" <<'PY'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("X-API-Key", sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(f"{r.status:03d}")
except urllib.error.HTTPError as e:
    print(f"{e.code:03d}")
except Exception:
    print("000")
PY
}

wait_for() {
    # wait_for URL WANT PID WHAT
    local url=$1 want=$2 pid=$3 what=$4 got=000
    local deadline=$(($(date +%s) + READY_TIMEOUT))
    while :; do
        got=$(status "$url")
        [ "$got" = "$want" ] && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited before $url answered $want"
        [ "$(date +%s)" -ge "$deadline" ] && die "$url did not answer $want within ${READY_TIMEOUT}s (last: $got)"
        sleep 0.2
    done
}

FAKE_PORT=$(free_port)
"$PY" "$ROOT/deploy/fake_civitai.py" --port "$FAKE_PORT" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
wait_for "http://127.0.0.1:$FAKE_PORT/api/v1/model-versions/1" 200 "$FAKE_PID" "the fake CivitAI"
log "fake CivitAI on 127.0.0.1:$FAKE_PORT"

PORT=$(free_port)
API_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
BASE=http://127.0.0.1:$PORT
(
    cd "$WORK"
    exec env HOST=127.0.0.1 PORT="$PORT" API_KEY="$API_KEY" CATALOG_DIR="$CATALOGS" MODELS_DIR="$MODELS" \
        CIVITAI_BASE_URL="http://127.0.0.1:$FAKE_PORT" CIVITAI_FALLBACK_URL= CIVITAI_TIMEOUT_S=5 LOG_LEVEL=INFO \
        PYTHONPATH="$ROOT" "$PY" -m service
) >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
wait_for "$BASE/ready" 200 "$SERVICE_PID" "the service"
log "service ready on $BASE"

# The document is read from the service itself, as a client would read it.
FILTERS=(--exclude-path "$EVENTS_PATH")
doc_status=$(status "$BASE/api/openapi.json" "$API_KEY")
if [ "$doc_status" != 200 ]; then
    die "GET /api/openapi.json answered $doc_status, expected 200"
fi
LOCATION=$BASE/api/openapi.json
TARGET=()

CMD=(
    "$ROOT/.venv/bin/schemathesis" run "$LOCATION" "${TARGET[@]}"
    -H "X-API-Key: $API_KEY"
    --checks "$CHECKS"
    "${FILTERS[@]}"
    --max-examples "$MAX_EXAMPLES"
    --seed "$SEED"
    --workers 1
    --request-timeout 10
    --max-failures 20
)
log "running: ${CMD[*]//$API_KEY/\$API_KEY}"
# From the scratch folder, so hypothesis' database and any report stay out of the checkout.
rc=0
(cd "$WORK" && timeout --kill-after=10 "$RUN_TIMEOUT" "${CMD[@]}") || rc=$?
[ "$rc" = 124 ] && die "schemathesis did not finish within ${RUN_TIMEOUT}s"
[ "$rc" = 0 ] || die "schemathesis found failures (exit $rc)"

kill -0 "$SERVICE_PID" 2>/dev/null || die "the service died during the run"
if grep -q "unexpected error answering" "$WORK/service.log"; then
    grep -A20 "unexpected error answering" "$WORK/service.log" | head -60 >&2
    die "the service logged an unexpected error"
fi
PASSED=1
