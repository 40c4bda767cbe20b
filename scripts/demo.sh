#!/usr/bin/env bash
# README quick start, command 1: set up .venv and run the demo on the embedded defaults.
#   bash scripts/demo.sh [amgs demo options]     e.g. --port 8081 --replay-seconds 60 --duration 300
# The demo prefers Mosquitto (as root this installs it when missing); without it the demo falls back
# to the embedded pure-Python amqtt broker.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing mosquitto (the demo's broker) ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  else
    echo "mosquitto is not installed: using the embedded amqtt broker ('sudo apt-get install mosquitto' for the real one)" >&2
  fi
fi
bash scripts/setup.sh device,server >&2
exec .venv/bin/amgs demo "$@"
