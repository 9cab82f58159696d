#!/usr/bin/env bash
# Build the container image from a clean clone and check it from outside with podman.
#
#   scripts/container_check.sh                        # everything (what .ci/run runs)
#   scripts/container_check.sh --only sqlite          # one scenario: sqlite|postgres|compose
#   scripts/container_check.sh --refresh-constraints  # rewrite scripts/constraints.txt
#
# Steps (see docs/docker.md):
#  1. podman, runc, debootstrap: installed with apt-get if missing (root); podman-compose
#     (pinned, from PyPI: Debian's 1.0.3 mangles CMD health checks) in a cached venv;
#  2. stand-in base images where no image registry is reachable, built once and cached by
#     tag: docker.io/library/python:3.11-slim and docker.io/library/postgres:15 from a
#     debootstrap'ed Debian (scripts/container/*.Containerfile);
#  3. `git clone` of this repository's HEAD commit, `podman build` of its Dockerfile;
#  4. scripts/container/probe.py: SQLite, PostgreSQL (a fresh database on the machine's
#     server) and compose.yaml scenarios; the image size and start times are printed.
#
# Exit status: 0 = passed, or SKIPPED (printed loudly) where podman cannot run here;
# 1 = a check failed. VOLTARO_CONTAINER_CHECK=require turns a skip into a failure.
# Environment: VOLTARO_CHECK_PYTHON (host interpreter with websockets, ocpp, psycopg; default .venv),
# VOLTARO_CHECK_POSTGRES_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
# CONTAINERS_CONF (default scripts/container/containers.conf).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$ROOT/scripts/container"
PYTHON="${VOLTARO_CHECK_PYTHON:-$ROOT/.venv/bin/python}"
IMAGE="localhost/voltaro:check"
BASE_TAG="docker.io/library/python:3.11-slim"
PG_TAG="docker.io/library/postgres:15"
MINBASE_TAG="localhost/bookworm-min"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

ONLY=""
REFRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    --refresh-constraints) REFRESH=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "container_check: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "container-check: $*"; }

skip() {
  echo "================================================================================"
  echo "container-check: SKIPPED: $*"
  echo "container-check: the container image was NOT built or checked on this machine."
  echo "================================================================================"
  if [ "${VOLTARO_CONTAINER_CHECK:-}" = "require" ]; then
    echo "container-check: VOLTARO_CONTAINER_CHECK=require: a skip is a failure" >&2
    exit 1
  fi
  exit 0
}

WORK="$(mktemp -d /tmp/voltaro-container-check.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
started_all=$SECONDS

# --- 1. tools ------------------------------------------------------------------------
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    command -v podman >/dev/null || skip "podman is not installed and this is not a root Debian machine (apt-get install podman runc debootstrap podman-compose)"
  else
    say "installing ${need[*]} with apt-get"
    if ! { apt-get update -q >"$WORK/apt.log" 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          "${need[@]}" >>"$WORK/apt.log" 2>&1; }; then
      tail -n 20 "$WORK/apt.log"
      command -v podman >/dev/null || skip "apt-get could not install podman"
      say "FAILED: apt-get could not install ${need[*]}"
      exit 1
    fi
  fi
fi
if ! podman info >"$WORK/info.log" 2>&1; then
  tail -n 5 "$WORK/info.log"
  skip "podman is installed but cannot run here (podman info failed)"
fi
PODMAN_RUN=(podman run --rm --network host --cgroups=enabled)
say "$(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), cgroups $(podman info --format '{{.Host.CgroupsVersion}}')"

# --- 2. stand-in base images -------------------------------------------------------------
have_image() { podman image exists "$1"; }

build_minbase() {
  have_image "$MINBASE_TAG" && return 0
  command -v debootstrap >/dev/null || skip "no $BASE_TAG and no debootstrap to build a stand-in"
  # The Debian mirror this machine's apt already uses (no registry named in our files).
  local codename mirror
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  [ "$codename" = bookworm ] || codename=bookworm  # Python 3.11 is bookworm's
  mirror="$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null \
    | awk -v s="$codename" '$2 == s { print $1; exit }')"
  [ -n "$mirror" ] || skip "no Debian mirror for $codename in this machine's apt sources"
  say "building $MINBASE_TAG with debootstrap (a few minutes, once)"
  local t0=$SECONDS
  if ! debootstrap --variant=minbase "$codename" "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log"
    skip "debootstrap could not build a Debian root filesystem here"
  fi
  tar -C "$WORK/rootfs" -c . | podman import -q - "$MINBASE_TAG" >/dev/null
  rm -rf "$WORK/rootfs"
  say "$MINBASE_TAG built in $((SECONDS - t0)) s"
}

build_standin() {  # TAG CONTAINERFILE
  have_image "$1" && { say "using the cached $1 ($(podman image inspect --format '{{.Id}}' "$1" | cut -c1-12))"; return 0; }
  build_minbase
  say "building the local stand-in for $1 from $(basename "$2")"
  local t0=$SECONDS
  if ! podman build --pull=never --network host --layers=false -f "$2" -t "$1" "$HERE" \
      >"$WORK/standin.log" 2>&1; then
    tail -n 30 "$WORK/standin.log"
    say "FAILED: building the stand-in $1"
    exit 1
  fi
  say "$1 (stand-in) built in $((SECONDS - t0)) s"
}

# Where a registry is reachable, `podman pull` the real images first: they are used as
# they are. This script never pulls (our CI has no route to a registry).
smoke_image="$BASE_TAG"
if ! have_image "$BASE_TAG"; then
  build_minbase
  smoke_image="$MINBASE_TAG"
fi
# Can podman start a container at all here? (Failures past this point are ours.)
if ! "${PODMAN_RUN[@]}" "$smoke_image" true >"$WORK/smoke.log" 2>&1; then
  tail -n 10 "$WORK/smoke.log"
  skip "podman cannot start a container on this machine"
fi
build_standin "$BASE_TAG" "$HERE/python-standin.Containerfile"
say "base $BASE_TAG = $(podman image inspect --format '{{.Id}}' "$BASE_TAG" | cut -c1-12) digest $(podman image inspect --format '{{.Digest}}' "$BASE_TAG")"

# --- 3. the image from a clean clone --------------------------------------------------------
CA_MOUNT=()
[ -f "$CA_BUNDLE" ] && CA_MOUNT=(-v "$CA_BUNDLE:$CA_BUNDLE:ro")
rev="$(git -C "$ROOT" rev-parse HEAD)"
git clone -q --no-checkout "$ROOT" "$WORK/src"
git -C "$WORK/src" checkout -q --detach "$rev"
if ! git -C "$ROOT" diff --quiet HEAD -- Dockerfile .dockerignore voltaro console pyproject.toml scripts/constraints.txt 2>/dev/null; then
  say "note: uncommitted changes are not in the image (it is built from commit ${rev:0:12})"
fi

if [ "$REFRESH" = 1 ]; then
  say "resolving the image's dependencies in a clean venv on $BASE_TAG"
  "${PODMAN_RUN[@]}" "${CA_MOUNT[@]}" -v "$WORK/src:/src:ro" "$BASE_TAG" sh -c '
    cp -r /src /tmp/build && python -m venv /tmp/venv \
    && /tmp/venv/bin/pip install -q --disable-pip-version-check "setuptools>=68" /tmp/build >/dev/null \
    && /tmp/venv/bin/pip freeze --all --disable-pip-version-check' \
    | grep -v -e '^voltaro' -e '^pip==' >"$WORK/freeze.txt"
  { sed -n '/^#/p' "$ROOT/scripts/constraints.txt"; cat "$WORK/freeze.txt"; } >"$WORK/constraints.txt"
  mv "$WORK/constraints.txt" "$ROOT/scripts/constraints.txt"
  say "wrote scripts/constraints.txt ($(grep -vc '^#' "$ROOT/scripts/constraints.txt") pins): review and commit it"
  exit 0
fi

say "building $IMAGE from a clean clone at ${rev:0:12}"
previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
t0=$SECONDS
# --format docker: the OCI format has no HEALTHCHECK. --network host: pip reaches the
# package index from the build; the CA bundle mount lets it trust what the host trusts.
if ! podman build --pull=never --network host --layers=false --format docker \
    "${CA_MOUNT[@]}" --label "org.opencontainers.image.revision=$rev" \
    -t "$IMAGE" "$WORK/src" >"$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log"
  say "FAILED: podman build"
  exit 1
fi
build_s=$((SECONDS - t0))
# The previous check's image, now untagged: remove it (only that one) so runs do not pile up.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size_bytes="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
base_bytes="$(podman image inspect --format '{{.Size}}' "$BASE_TAG")"
say "image $IMAGE built in ${build_s} s: $((size_bytes / 1000000)) MB ($(((size_bytes - base_bytes) / 1000000)) MB on top of the base's $((base_bytes / 1000000)) MB)"

# No build tools in the final image: no compiler, and no pip or setuptools in the venv.
if "${PODMAN_RUN[@]}" --entrypoint sh "$IMAGE" -c \
    'command -v gcc || command -v cc || ls /opt/voltaro/bin/pip* /opt/voltaro/lib/python3*/site-packages/setuptools 2>/dev/null'; then
  say "FAILED: build tools found in the final image (above)"
  exit 1
fi
say "no compiler, pip or setuptools in the image's /opt/voltaro"

# --- 4. scenarios ----------------------------------------------------------------------------
PODMAN_COMPOSE_VERSION=1.6.0
podman_compose() {  # prints the path of a pinned podman-compose, installing it once
  local cache venv
  if [ "$(id -u)" = 0 ]; then cache=/var/cache/voltaro-container; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/voltaro-container"; fi
  venv="$cache/podman-compose-$PODMAN_COMPOSE_VERSION"
  if [ ! -x "$venv/bin/podman-compose" ]; then
    mkdir -p "$cache"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q \
        "podman-compose==$PODMAN_COMPOSE_VERSION"; } >"$WORK/pip.log" 2>&1; then
      grep -v "is ignored" "$WORK/pip.log" | tail -n 10 >&2
      rm -rf "$venv"
      return 1
    fi
  fi
  echo "$venv/bin/podman-compose"
}
# compose.cluster.yaml (two nodes behind HAProxy, docs/scaling.md) is not started here:
# no HAProxy image without a registry. podman-compose must at least resolve it (anchors,
# merge keys, variables) into two cluster nodes with their own ids; under a second.
check_cluster_compose() {  # $1: podman-compose; $2: the source tree
  local out="$WORK/compose.cluster.resolved.yaml"
  if ! (cd "$2" && POSTGRES_PASSWORD=check VOLTARO_API_TOKENS="" \
        "$1" -f compose.cluster.yaml config) >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    return 1
  fi
  "$PYTHON" - "$out" <<'PY'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
nodes = sorted(n for n in services if n.startswith("voltaro-"))
assert nodes == ["voltaro-1", "voltaro-2"], nodes
for n in nodes:
    env, command = services[n]["environment"], services[n]["command"]
    assert str(env["VOLTARO_CLUSTER"]).lower() == "true", (n, env)
    assert command[-2:] == ["--node-id", n], (n, command)
    assert "voltaro:check@postgres" in env["VOLTARO_DATABASE_URL"], (n, env)
print("compose.cluster.yaml: podman-compose config resolves two cluster nodes and HAProxy")
PY
}
skip_compose=""
[ -x "$PYTHON" ] || { say "FAILED: no host Python at $PYTHON (run make lint first or set VOLTARO_CHECK_PYTHON)"; exit 1; }
scenarios=(sqlite postgres compose)
[ -n "$ONLY" ] && scenarios=("$ONLY")
failed=()
for s in "${scenarios[@]}"; do
  case "$s" in
    sqlite|postgres)
      "$PYTHON" "$HERE/probe.py" --image "$IMAGE" "$s" || failed+=("$s") ;;
    compose)
      build_standin "$PG_TAG" "$HERE/postgres-standin.Containerfile"
      if ! compose="$(podman_compose)"; then
        skip_compose="podman-compose $PODMAN_COMPOSE_VERSION could not be installed with pip: compose.yaml was run by scripts/container/mini_compose.py (plain podman) instead"
        say "compose: $skip_compose"
        compose=""
      fi
      "$PYTHON" "$HERE/probe.py" --image "$IMAGE" --podman-compose "$compose" \
        --compose-file "$WORK/src/compose.yaml" \
        --compose-file "$WORK/src/scripts/container/compose.check.yaml" \
        compose || failed+=("$s")
      if [ -n "$compose" ]; then
        check_cluster_compose "$compose" "$WORK/src" || failed+=("compose.cluster.yaml")
      fi ;;
    *) say "unknown scenario $s"; exit 2 ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]} (total $((SECONDS - started_all)) s)"
  exit 1
fi
if [ -n "$skip_compose" ]; then
  echo "================================================================================"
  echo "container-check: note: $skip_compose"
  echo "================================================================================"
fi
say "passed: ${scenarios[*]}; image $((size_bytes / 1000000)) MB; total $((SECONDS - started_all)) s"
