#!/usr/bin/env bash
# Create .venv (if missing) and install hostbatch with its dev extras into it.
# With --with-sshd (the test command passes it) it also installs, with apt, what the
# tests drive for real when missing: OpenSSH's server and client (a real sshd on
# loopback), tmux (the interactive shell is tested as a person would use it) and sudo
# (--sudo is tested against a real sudoers entry for the sshd's login user).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

have_system_deps() {
    { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; } &&
        command -v ssh-agent >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 &&
        command -v sudo >/dev/null 2>&1 && { [ -x /usr/sbin/visudo ] || command -v visudo >/dev/null 2>&1; }
}
if [ "${1:-}" = "--with-sshd" ] && ! have_system_deps; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing openssh-server, openssh-client, tmux and sudo with apt" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        openssh-server openssh-client tmux sudo >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.hostbatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
# An editable install has no bytecode, and some environments set PYTHONDONTWRITEBYTECODE:
# then every hostbatch start compiles ~100 modules again (about 0.1 s of CPU). A wheel
# install compiles at install time; do the same for the source tree (changed files only).
.venv/bin/python -m compileall -q src >/dev/null
