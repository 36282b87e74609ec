#!/usr/bin/env bash
# Build the container image and check that it serves.
#
#   bash deploy/smoke-test.sh
#
# Engine: a working Docker engine if there is one, else podman/buildah
# (installed with apt-get when missing; needs root). When the default base image
# (python:3.12-slim) cannot be pulled, a stand-in base is made from Debian
# packages with debootstrap and imported as localhost/smoke-base:bookworm; its
# root filesystem is cached under ${XDG_CACHE_HOME:-~/.cache}/comfy-catalog/.
#
# Run: `podman run --network host` (or `docker run --network host`); when no
# container can be started here, `buildah run --isolation chroot --network host`
# runs `python -m service` inside the image's filesystem instead. Only
# 127.0.0.1 is ever contacted.
#
# Environment knobs (all optional):
#   SMOKE_IMAGE        tag to build            (comfy-catalog-service:smoke)
#   SMOKE_BASE_IMAGE   base image to try first (python:3.12-slim)
#   SMOKE_FORCE_STANDIN=1  skip the pull, use the Debian stand-in base
#   SMOKE_RUNNER       auto | podman | docker | buildah   (auto)
#   SMOKE_TIMEOUT_S    seconds to wait for /health (60)
#   SMOKE_KEEP_IMAGE=1 keep the built image (default: kept; set 0 to remove)
#   DEBIAN_MIRROR      mirror for debootstrap (default: read from apt sources)
#   SMOKE_PULL_TIMEOUT_S  seconds allowed for pulling the base image (120)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${SMOKE_IMAGE:-comfy-catalog-service:smoke}
DEFAULT_BASE=${SMOKE_BASE_IMAGE:-python:3.12-slim}
STANDIN=localhost/smoke-base:bookworm
STANDIN_SUITE=bookworm
STANDIN_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
# Bump when the stand-in recipe changes, so a stale cached tarball is not reused.
STANDIN_VERSION=1
CACHE_DIR=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/comfy-catalog
HEALTH_TIMEOUT=${SMOKE_TIMEOUT_S:-60}
PULL_TIMEOUT=${SMOKE_PULL_TIMEOUT_S:-120}
RUNNER_WANTED=${SMOKE_RUNNER:-auto}
NAME=comfy-catalog-smoke-$$

ENGINE=""        # docker | podman
RUNNER=""        # docker | podman | buildah
CID=""           # container id (docker/podman run)
BCTR=""          # buildah working container
BPID=""          # pid of the background `buildah run`
WORK=""          # scratch folder
PASSED=0
START=$(date +%s)

log() { printf '[smoke %3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$CID" ]; then
        "$RUNNER" rm -f "$CID" >/dev/null 2>&1
    fi
    if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
        stop_buildah_process >/dev/null 2>&1
    fi
    if [ -n "$BCTR" ]; then
        buildah rm "$BCTR" >/dev/null 2>&1
    fi
    if [ "${SMOKE_KEEP_IMAGE:-1}" = "0" ] && [ -n "$ENGINE" ]; then
        "$ENGINE" rmi "$IMAGE" >/dev/null 2>&1
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$PASSED" = 1 ] && [ "$rc" = 0 ]; then
        echo "SMOKE TEST: PASS (image $IMAGE, runner $RUNNER, $(($(date +%s) - START))s)"
    else
        [ "$rc" = 0 ] && rc=1
        echo "SMOKE TEST: FAIL (see the log above; exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfy-catalog-smoke.XXXXXX")

# --------------------------------------------------------------------------
# packages
# --------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    # apt_install PKG... : install Debian packages, running `apt-get update`
    # only when the plain install fails (lists missing or stale).
    command -v apt-get >/dev/null || die "missing $* and no apt-get to install it"
    [ "$(id -u)" = 0 ] || die "missing $*; run as root or install: apt-get install $*"
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "$@" >"$WORK/apt.log" 2>&1; then
        if [ "$APT_UPDATED" = 0 ]; then
            APT_UPDATED=1
            apt-get -o DPkg::Lock::Timeout=600 update -q >>"$WORK/apt.log" 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
                --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1 ||
                { tail -20 "$WORK/apt.log" >&2; die "apt-get install $* failed"; }
        else
            tail -20 "$WORK/apt.log" >&2
            die "apt-get install $* failed"
        fi
    fi
}

need() {
    # need CMD PKG : make sure CMD exists, installing PKG if not.
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

need python3 python3

# --------------------------------------------------------------------------
# engine
# --------------------------------------------------------------------------
if [ "$RUNNER_WANTED" != podman ] && [ "$RUNNER_WANTED" != buildah ] &&
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=docker
else
    [ "$RUNNER_WANTED" = docker ] && die "SMOKE_RUNNER=docker but no working Docker engine"
    # runc too: Debian's podman depends on "crun | runc", and crun cannot start
    # containers on some sandboxed hosts (hybrid cgroups) where runc can.
    missing=()
    for c in podman buildah runc; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
    ENGINE=podman
fi
log "engine: $ENGINE ($("$ENGINE" --version 2>/dev/null | head -1))"

image_exists() {
    if [ "$ENGINE" = podman ]; then
        podman image exists "$1"
    else
        docker image inspect "$1" >/dev/null 2>&1
    fi
}

# --------------------------------------------------------------------------
# base image
# --------------------------------------------------------------------------
debian_mirror() {
    # First Debian archive URI in the apt sources (one-line or deb822 format)
    # that serves dists/<suite>/Release. Never hard-coded: DEBIAN_MIRROR wins.
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    python3 - "$STANDIN_SUITE" <<'PY'
import glob, sys, urllib.request

suite = sys.argv[1]
uris = []

def add(types, uri_list, suites):
    if "deb" not in types:
        return
    if suites and all("security" in s for s in suites):
        return
    for u in uri_list:
        u = u.rstrip("/")
        if u.startswith(("http://", "https://")) and "security" not in u and u not in uris:
            uris.append(u)

files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
for path in files:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if parts[0] not in ("deb", "deb-src"):
            continue
        rest = parts[1:]
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            add([parts[0]], [rest[0]], [rest[1]])

for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        continue
    for stanza in text.split("\n\n"):
        fields = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        add(fields.get("types", "").split(), fields.get("uris", "").split(), fields.get("suites", "").split())

for uri in uris:
    try:
        with urllib.request.urlopen(f"{uri}/dists/{suite}/Release", timeout=15) as r:
            if r.status == 200:
                print(uri)
                sys.exit(0)
    except Exception:
        continue
sys.stderr.write(f"no apt source serves dists/{suite}/Release (tried: {' '.join(uris) or 'none'}); set DEBIAN_MIRROR\n")
sys.exit(1)
PY
}

build_standin() {
    local tarball="$CACHE_DIR/smoke-base-$STANDIN_SUITE-v$STANDIN_VERSION.tar"
    if image_exists "$STANDIN" &&
        [ "$("$ENGINE" image inspect -f '{{index .Config.Labels "comfy-catalog.smoke-base"}}' "$STANDIN" 2>/dev/null)" = "v$STANDIN_VERSION" ]; then
        log "stand-in base $STANDIN (v$STANDIN_VERSION) already present"
        return
    fi
    if [ ! -s "$tarball" ]; then
        need debootstrap debootstrap
        [ "$(id -u)" = 0 ] || die "debootstrap needs root"
        local mirror rootfs
        mirror=$(debian_mirror) || die "could not find a Debian mirror in the apt sources"
        rootfs="$WORK/rootfs"
        log "debootstrap --variant=minbase $STANDIN_SUITE from $mirror (cached afterwards in $CACHE_DIR)"
        if ! debootstrap --variant=minbase --include="$STANDIN_PACKAGES" \
            "$STANDIN_SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
            tail -30 "$WORK/debootstrap.log" >&2
            die "debootstrap failed"
        fi
        # Trim what an image does not need.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
            "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/var/log/*.log "$rootfs"/debootstrap
        [ -x "$rootfs/usr/bin/python" ] || ln -sf python3 "$rootfs/usr/bin/python"
        chroot "$rootfs" python -c 'import venv, ensurepip, ssl, sys; assert sys.version_info >= (3, 11)' ||
            die "stand-in root filesystem has no usable python"
        mkdir -p "$CACHE_DIR"
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        log "cached $(du -h "$tarball" | cut -f1) root filesystem at $tarball"
    else
        log "using cached root filesystem $tarball"
    fi
    "$ENGINE" import -q \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL comfy-catalog.smoke-base=v$STANDIN_VERSION" \
        "$tarball" "$STANDIN" >/dev/null
    log "imported $STANDIN"
}

BASE=""
if [ "${SMOKE_FORCE_STANDIN:-0}" != 1 ]; then
    if image_exists "$DEFAULT_BASE"; then
        BASE=$DEFAULT_BASE
    else
        log "pulling $DEFAULT_BASE (timeout ${PULL_TIMEOUT}s)"
        if timeout "$PULL_TIMEOUT" "$ENGINE" pull -q "$DEFAULT_BASE" >"$WORK/pull.log" 2>&1; then
            BASE=$DEFAULT_BASE
        else
            log "cannot pull $DEFAULT_BASE: $(tail -1 "$WORK/pull.log")"
        fi
    fi
fi
if [ -z "$BASE" ]; then
    build_standin
    BASE=$STANDIN
fi
log "base image: $BASE"

# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------
# Use the host's package index and CA bundle inside the build when it has
# its own (a mirror, or a TLS-inspecting egress proxy). file:// indexes are
# host paths and are left out.
host_pip() {
    if [ -x "$ROOT/.venv/bin/pip" ]; then
        "$ROOT/.venv/bin/pip" "$@" 2>/dev/null
    else
        python3 -m pip "$@" 2>/dev/null
    fi
}
web_urls() { tr ' ' '\n' | grep -E '^https?://' | paste -sd' ' - || true; }

BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE")
BUILD_MOUNTS=()
index_url=${PIP_INDEX_URL:-$(host_pip config get global.index-url || true)}
extra_urls=${PIP_EXTRA_INDEX_URL:-$(host_pip config get global.extra-index-url || true)}
trusted=${PIP_TRUSTED_HOST:-$(host_pip config get global.trusted-host || true)}
index_url=$(printf '%s' "$index_url" | web_urls)
extra_urls=$(printf '%s' "$extra_urls" | tr '\n' ' ' | web_urls)
[ -n "$index_url" ] && BUILD_ARGS+=(--build-arg "PIP_INDEX_URL=$index_url")
[ -n "$extra_urls" ] && BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_urls")
[ -n "$trusted" ] && BUILD_ARGS+=(--build-arg "PIP_TRUSTED_HOST=$(printf '%s' "$trusted" | tr '\n' ' ')")

ca_bundle=""
for c in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" "$(host_pip config get global.cert || true)"; do
    if [ -n "$c" ] && [ -f "$c" ]; then
        ca_bundle=$c
        break
    fi
done
if [ -n "$ca_bundle" ]; then
    if [ "$ENGINE" = podman ]; then
        BUILD_MOUNTS+=(-v "$ca_bundle:/run/host-ca-bundle.pem:ro")
        BUILD_ARGS+=(--build-arg "PIP_CERT=/run/host-ca-bundle.pem")
        log "build uses the host CA bundle $ca_bundle"
    else
        log "note: host CA bundle $ca_bundle is not passed to docker build"
    fi
fi

log "building $IMAGE"
old_id=$("$ENGINE" image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
build_start=$(date +%s)
if [ "$ENGINE" = podman ]; then
    podman build --isolation chroot --network host --format docker --layers \
        "${BUILD_MOUNTS[@]}" "${BUILD_ARGS[@]}" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" \
        >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "image build failed"; }
else
    docker build --network host "${BUILD_ARGS[@]}" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" \
        >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "image build failed"; }
fi
log "built $IMAGE in $(($(date +%s) - build_start))s"
new_id=$("$ENGINE" image inspect -f '{{.Id}}' "$IMAGE")
# Drop the previous build of this tag (now untagged) and stale build-cache
# images of this project (untagged, by label) so reruns do not pile up.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    "$ENGINE" rmi "$old_id" >/dev/null 2>&1 || true
fi
"$ENGINE" image prune -f --filter label=org.opencontainers.image.title=comfy-catalog-service >/dev/null 2>&1 || true
"$ENGINE" image prune -f --filter label=comfy-catalog.stage=builder --filter until=24h >/dev/null 2>&1 || true

# Static checks on the image's configuration.
"$ENGINE" image inspect "$IMAGE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" >"$WORK/healthcheck.cmd" <<'PY' || die "image configuration check failed"
import json, sys

info = json.load(open(sys.argv[1]))
info = info[0] if isinstance(info, list) else info
cfg = info.get("Config") or {}
problems = []
user = str(cfg.get("User") or info.get("User") or "")
if user.split(":")[0] in ("", "0", "root"):
    problems.append(f"image runs as root (User={user!r})")
if cfg.get("Cmd") != ["python", "-m", "service"]:
    problems.append(f"unexpected CMD {cfg.get('Cmd')!r}")
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
for k, v in {"HOST": "0.0.0.0", "PORT": "8189", "CATALOG_DIR": "/data/catalogs", "MODELS_DIR": "/models"}.items():
    if env.get(k) != v:
        problems.append(f"ENV {k}={env.get(k)!r}, expected {v!r}")
if "8189/tcp" not in (cfg.get("ExposedPorts") or {}):
    problems.append("port 8189 is not exposed")
if (cfg.get("StopSignal") or "SIGTERM") not in ("SIGTERM", "15"):
    problems.append(f"StopSignal {cfg.get('StopSignal')!r}")
hc = cfg.get("Healthcheck") or info.get("Healthcheck") or {}
test = hc.get("Test") or []
if not test or test[0] not in ("CMD", "CMD-SHELL"):
    problems.append(f"no HEALTHCHECK in the image ({hc!r})")
for p in problems:
    sys.stderr.write(f"image config: {p}\n")
if problems:
    sys.exit(1)
# One argument per line (NUL-free): what to exec for the health check.
print("\n".join(test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]))
PY
mapfile -t HEALTHCHECK_CMD <"$WORK/healthcheck.cmd"
log "image config ok (non-root user, CMD, ENV, EXPOSE 8189, HEALTHCHECK)"

# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
API_KEY=$(python3 -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(32)))')
RUN_ENV=(HOST=127.0.0.1 "PORT=$PORT" "API_KEY=$API_KEY" CATALOG_DIR=/data/catalogs MODELS_DIR=/models
    LOG_LEVEL=INFO SHUTDOWN_TIMEOUT_S=5)

try_container_run() {
    # $1 = docker | podman. Start the container and make sure it stays up.
    # Sandboxed hosts may refuse the runtime's default rlimits (podman raises
    # nofile to 1048576) or crun's cgroup handling on hybrid cgroups; retry
    # with the host's limits and with runc before giving up.
    local engine=$1 env_args=() e opts attempt
    local hard_nofile
    hard_nofile=$(ulimit -Hn)
    case "$hard_nofile" in unlimited | '' | *[!0-9]*) hard_nofile=65536 ;; esac
    [ "$hard_nofile" -gt 65536 ] && hard_nofile=65536
    local limits="--ulimit nofile=$hard_nofile:$hard_nofile --ulimit nproc=32768:32768"
    local attempts=("")
    if [ "$engine" = podman ]; then
        attempts+=("$limits")
        command -v runc >/dev/null 2>&1 && attempts+=("--runtime runc $limits")
    fi
    for e in "${RUN_ENV[@]}"; do env_args+=(-e "$e"); done
    for attempt in "${attempts[@]}"; do
        read -r -a opts <<<"$attempt"
        local global=() local_opts=()
        # --runtime is a global podman option: it goes before `run`.
        if [ "${opts[0]:-}" = --runtime ]; then
            global=("${opts[@]:0:2}")
            local_opts=("${opts[@]:2}")
        else
            local_opts=("${opts[@]}")
        fi
        "$engine" rm -f "$NAME" >/dev/null 2>&1 || true
        if CID=$("$engine" "${global[@]}" run -d --name "$NAME" --network host \
            "${local_opts[@]}" "${env_args[@]}" "$IMAGE" 2>"$WORK/run.err"); then
            sleep 1
            if [ "$("$engine" inspect -f '{{.State.Running}}' "$CID" 2>/dev/null)" = true ]; then
                RUNNER=$engine
                [ -n "$attempt" ] && log "$engine run needed: $attempt"
                return 0
            fi
            log "$engine container exited at once; its log:"
            "$engine" logs "$CID" 2>&1 | tail -20 >&2 || true
            "$engine" rm -f "$CID" >/dev/null 2>&1 || true
            CID=""
            return 1
        fi
        CID=""
        log "$engine run ${attempt:-(defaults)} cannot start a container: $(grep -v '^$' "$WORK/run.err" | tail -1)"
    done
    "$engine" rm -f "$NAME" >/dev/null 2>&1 || true
    return 1
}

start_buildah() {
    local env_args=() e
    for e in "${RUN_ENV[@]}"; do env_args+=(--env "$e"); done
    BCTR=$(buildah from -q --pull-never --name "$NAME" "containers-storage:$(image_ref)")
    log "buildah working container $BCTR"
    buildah run --isolation chroot --network host "${env_args[@]}" "$BCTR" -- python -m service \
        >"$WORK/service.log" 2>&1 &
    BPID=$!
    RUNNER=buildah
}

image_ref() {
    # podman/buildah store `name:tag` as localhost/name:tag.
    case "$IMAGE" in */*) echo "$IMAGE" ;; *) echo "localhost/$IMAGE" ;; esac
}

stop_buildah_process() {
    # SIGTERM the service inside the buildah container and wait (grace 15 s).
    local pids p waited=0
    pids=$(service_pids)
    local pid_list=()
    read -r -a pid_list <<<"$pids"
    [ "${#pid_list[@]}" -gt 0 ] && kill -TERM "${pid_list[@]}" 2>/dev/null
    kill -TERM "$BPID" 2>/dev/null || true
    while kill -0 "$BPID" 2>/dev/null && [ "$waited" -lt 150 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$BPID" 2>/dev/null; then
        for p in $(service_pids); do kill -KILL "$p" 2>/dev/null; done
        kill -KILL "$BPID" 2>/dev/null
        return 1
    fi
    wait "$BPID" 2>/dev/null || true
    return 0
}

service_pids() {
    # Processes started by our `buildah run` (its descendants), by pid tree.
    [ -n "$BPID" ] || return 0
    python3 - "$BPID" <<'PY'
import os, sys
root = int(sys.argv[1])
children = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        continue
    children.setdefault(ppid, []).append(int(d))
out, todo = [], list(children.get(root, []))
while todo:
    p = todo.pop()
    out.append(p)
    todo.extend(children.get(p, []))
print(" ".join(map(str, out)))
PY
}

service_logs() {
    case "$RUNNER" in
        buildah) tail -40 "$WORK/service.log" ;;
        *) [ -n "$CID" ] && "$RUNNER" logs "$CID" 2>&1 | tail -40 ;;
    esac
}

alive() {
    case "$RUNNER" in
        buildah) kill -0 "$BPID" 2>/dev/null ;;
        *) [ "$("$RUNNER" inspect -f '{{.State.Running}}' "$CID" 2>/dev/null)" = true ] ;;
    esac
}

if [ "$RUNNER_WANTED" = buildah ]; then
    start_buildah
elif [ "$ENGINE" = docker ]; then
    try_container_run docker || die "docker run failed"
elif ! try_container_run podman; then
    log "falling back to buildah run --isolation chroot"
    start_buildah
fi
log "service starting via $RUNNER on 127.0.0.1:$PORT"

# http GET URL [KEY] -> prints "STATUS BODYFILE"; status 000 when unreachable.
http() {
    python3 - "$@" <<'PY'
import sys, urllib.error, urllib.request
url = sys.argv[1]
req = urllib.request.Request(url)
if len(sys.argv) > 2:
    req.add_header("X-API-Key", sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception as e:
    status, body = 0, repr(e).encode()
sys.stdout.write(f"{status:03d}\n")
sys.stdout.buffer.write(body[:1000000])
PY
}

BASE_URL="http://127.0.0.1:$PORT"
deadline=$(($(date +%s) + HEALTH_TIMEOUT))
status=000
while :; do
    out=$(http "$BASE_URL/health" || true)
    status=${out%%$'\n'*}
    [ "$status" = 200 ] && break
    if ! alive; then
        service_logs >&2 || true
        die "the service exited before /health answered"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        service_logs >&2 || true
        die "/health did not answer 200 within ${HEALTH_TIMEOUT}s (last status $status)"
    fi
    sleep 0.5
done
log "GET /health -> 200 after $(($(date +%s) - deadline + HEALTH_TIMEOUT))s"

FAILURES=0
check() {
    # check NAME EXPECTED_STATUS ACTUAL_OUTPUT [PYTHON-EXPR over `body` (bytes) and `j` (JSON)]
    local name=$1 want=$2 out=$3 expr=${4:-}
    local got=${out%%$'\n'*} body=${out#*$'\n'}
    if [ "$got" != "$want" ]; then
        log "FAIL $name: status $got, expected $want; body: ${body:0:300}"
        FAILURES=$((FAILURES + 1))
        return
    fi
    if [ -n "$expr" ] && ! printf '%s' "$body" | python3 -c "
import json, sys
body = sys.stdin.buffer.read()
j = json.loads(body)
sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
        log "FAIL $name: status $got but body fails ($expr): ${body:0:300}"
        FAILURES=$((FAILURES + 1))
        return
    fi
    log "ok   $name -> $got"
}

# /ready may take a moment (first scan); poll it with the same deadline.
while :; do
    ready=$(http "$BASE_URL/ready" || true)
    [ "${ready%%$'\n'*}" = 200 ] && break
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.5
done
check "GET /health" 200 "$(http "$BASE_URL/health")" 'isinstance(j, dict)'
check "GET /ready" 200 "$ready"
check "GET /api/health with key (the extension's connection check)" 200 \
    "$(http "$BASE_URL/api/health" "$API_KEY")" 'j.get("status") == "ok" and j.get("authenticated") is True'
check "GET /api/health with a wrong key" 200 \
    "$(http "$BASE_URL/api/health" "wrong-key-wrong-key-wrong-key-00")" 'j.get("authenticated") is False'
check "GET /api/admin/models/civitai-map with key" 200 \
    "$(http "$BASE_URL/api/admin/models/civitai-map" "$API_KEY")" 'isinstance(j, dict) and "by_version" in j'
check "GET /api/admin/models/civitai-map without key" 401 \
    "$(http "$BASE_URL/api/admin/models/civitai-map")"
check "GET /api/admin/models/civitai-map with a wrong key" 401 \
    "$(http "$BASE_URL/api/admin/models/civitai-map" "wrong-key-wrong-key-wrong-key-00")"

# The image's own HEALTHCHECK command, run once inside the container.
hc_rc=0
case "$RUNNER" in
    buildah)
        buildah run --isolation chroot --network host --env "PORT=$PORT" "$BCTR" -- \
            "${HEALTHCHECK_CMD[@]}" >"$WORK/hc.log" 2>&1 || hc_rc=$?
        ;;
    *)
        "$RUNNER" exec "$CID" "${HEALTHCHECK_CMD[@]}" >"$WORK/hc.log" 2>&1 || hc_rc=$?
        ;;
esac
if [ "$hc_rc" = 0 ]; then
    log "ok   image HEALTHCHECK command -> exit 0"
else
    log "FAIL image HEALTHCHECK command -> exit $hc_rc: $(tail -3 "$WORK/hc.log")"
    FAILURES=$((FAILURES + 1))
fi

# SIGTERM: the service must stop within SHUTDOWN_TIMEOUT_S (5) plus a margin.
stop_start=$(date +%s%N)
case "$RUNNER" in
    buildah)
        if stop_buildah_process; then stop_ok=1; else stop_ok=0; fi
        BPID=""
        ;;
    *)
        "$RUNNER" stop -t 15 "$CID" >/dev/null 2>&1 || true
        code=$("$RUNNER" inspect -f '{{.State.ExitCode}}' "$CID" 2>/dev/null || echo '?')
        log "container exit code after SIGTERM: $code"
        stop_ok=1
        [ "$code" = 137 ] && stop_ok=0
        ;;
esac
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
if [ "$stop_ok" = 1 ] && [ "$stop_ms" -le 10000 ]; then
    log "ok   SIGTERM -> stopped in ${stop_ms}ms"
else
    log "FAIL SIGTERM -> not stopped cleanly (${stop_ms}ms)"
    service_logs >&2 || true
    FAILURES=$((FAILURES + 1))
fi

if [ "$FAILURES" != 0 ]; then
    log "service log (last lines):"
    service_logs >&2 || true
    die "$FAILURES check(s) failed"
fi
PASSED=1
