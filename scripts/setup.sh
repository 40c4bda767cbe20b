#!/usr/bin/env bash
# Create .venv and install the project with the given extras (default: device,server).
# Usage: scripts/setup.sh [EXTRAS] [--system-packages]
#   EXTRAS             comma list: device, server, models, test (test = everything the test suite needs)
#   --system-packages  also apt-get install the non-Python parts the tests use (mosquitto, nats-server, chromium;
#                      PostgreSQL is expected running, see tests/pg_support.py)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-device,server}"
PY="${PYTHON:-python3}"

if [[ "${2:-}" == "--system-packages" ]]; then
  need=()
  command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || need+=(mosquitto)
  command -v chromium >/dev/null || need+=(chromium)
  command -v systemd-analyze >/dev/null || need+=(systemd)
  command -v openssl >/dev/null || need+=(openssl)
  command -v ip >/dev/null || need+=(iproute2)
  command -v tc >/dev/null || need+=(iproute2)
  command -v shellcheck >/dev/null || need+=(shellcheck)
  command -v mosquitto_passwd >/dev/null || need+=(mosquitto)
  command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || need+=(nats-server)  # scale-out tests
  if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
      echo "installing system packages: ${need[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "missing system packages (install them as root): ${need[*]}" >&2
    fi
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
echo "ready: .venv with amgs[${EXTRAS}]"
