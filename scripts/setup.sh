#!/usr/bin/env bash
# Create .venv (if missing) and install hostbatch with its dev extras into it.
# Installs OpenSSH's server with apt when it is missing and we may (root or sudo),
# because the integration tests start a real sshd on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need_sshd() { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; }
if [ "${1:-}" = "--with-sshd" ] && ! need_sshd; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing openssh-server with apt" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.hostbatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
