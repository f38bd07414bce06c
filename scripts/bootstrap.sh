#!/usr/bin/env bash
# Prepare this machine to run llmfleet's lab and tests:
#   - the host packages the test fleet needs (debootstrap, systemd-container, iproute2, ...),
#   - a pinned uv in .cache/uv (never in the system Python),
#   - the controller environment .venv on Python >= 3.12, synced from uv.lock,
#   - promtool (the alert rule tests), taken from Debian's prometheus package without installing it.
# Re-running with nothing changed takes a few seconds.
set -euo pipefail

UV_VERSION=0.13.9
HOST_PACKAGES=(debootstrap systemd-container iproute2 rsync openssh-client curl gnupg apt-cacher-ng)

repo=$(cd "$(dirname "$0")/.." && pwd)
cache="$repo/.cache"
mkdir -p "$cache"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

install_host_packages() {
  local missing=()
  for pkg in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages: ${missing[*]}; run as root or install them with apt-get"
    exit 1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_uv() {
  local uv="$cache/uv/bin/uv"
  if [ -x "$uv" ] && [ "$("$uv" --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
    return
  fi
  log "installing uv $UV_VERSION into $cache/uv"
  rm -rf "$cache/uv"
  python3 -m venv "$cache/uv"
  "$cache/uv/bin/pip" install -q "uv==$UV_VERSION"
}

# The first interpreter >= 3.12 that really runs (pyenv shims on PATH may not).
find_python() {
  local candidates=("${LLMFLEET_PYTHON:-}" python3.13 python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    candidates+=("$root"/versions/3.1[2-9]*/bin/python3)
  fi
  candidates+=(/usr/bin/python3.13 /usr/bin/python3.12 /usr/local/bin/python3.12)
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      "$py" -c 'import sys; print(sys.executable)'
      return
    fi
  done
  # uv can fetch a managed Python where the network allows it.
  "$cache/uv/bin/uv" python find '>=3.12' 2>/dev/null || {
    log "no Python >= 3.12 found; set LLMFLEET_PYTHON=/path/to/python3.12"
    exit 1
  }
}

# ansible-lint and molecule look in $ANSIBLE_HOME/collections first: point it at this checkout, so
# that no stale installed copy of the collection shadows the working tree.
link_collection() {
  local home="${ANSIBLE_HOME:-$HOME/.ansible}"
  local link="$home/collections/ansible_collections/llmfleet/serve"
  mkdir -p "$(dirname "$link")"
  if [ "$(readlink "$link" 2>/dev/null)" != "$repo" ]; then
    rm -rf "$link"
    ln -s "$repo" "$link"
  fi
}

# promtool from the OS's prometheus package, extracted rather than installed: installing the package
# on a machine without systemd as PID 1 starts the Prometheus daemon through its init.d script.
# Cached per machine under the package's version; .cache/bin/promtool links to it.
install_promtool() {
  local version dir tmp
  version=$(apt-cache show --no-all-versions prometheus 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
  if [ -z "$version" ]; then
    log "apt knows no prometheus package (for promtool); run apt-get update"
    exit 1
  fi
  dir="${LLMFLEET_CACHE:-$HOME/.cache/llmfleet}/promtool/$version"
  if [ ! -x "$dir/promtool" ]; then
    log "extracting promtool from prometheus $version"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq "prometheus=$version" 2>/dev/null)
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir.partial" && mkdir "$dir.partial" && mv "$tmp/usr/bin/promtool" "$dir.partial/"
    mv "$dir.partial" "$dir"
    rm -rf "$tmp"
  fi
  mkdir -p "$cache/bin"
  ln -sfn "$dir/promtool" "$cache/bin/promtool"
}

install_host_packages
install_uv
install_promtool
link_collection
python=$(find_python)
# Bytecode at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, every process (each module run,
# each test) would otherwise compile the libraries it imports again, 0.3 s for a hub client.
UV_PROJECT_ENVIRONMENT="$repo/.venv" "$cache/uv/bin/uv" sync --frozen --quiet --compile-bytecode --python "$python" \
  --project "$repo"
ansible_version=$("$repo/.venv/bin/ansible" --version)
log "ready: $repo/.venv ($("$repo/.venv/bin/python" --version), ${ansible_version%%$'\n'*})"
