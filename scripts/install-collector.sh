#!/usr/bin/env bash
# Install or upgrade the aMGS collector host (Debian 12 / Ubuntu 22.04+): Mosquitto with the aMGS
# config, the collector in /opt/amgs/venv, its systemd unit, the site CA; the dashboard and API over
# HTTPS with the site certificate (port 8443). See docs/deployment.md.
#
# Usage: sudo scripts/install-collector.sh --site SITE --host NAME [options]
#   --site SITE        site id devices publish under (letters, digits, _ . -)
#   --host NAME        name devices use to reach this host (in the broker certificate)
#   --san NAME|IP      another name or address of this host for the certificate (repeatable)
#   --no-ca            the institution provides server.crt/server.key/ca.crt (docs/deployment.md)
#   --wheels DIR       install Python packages from this folder only (no internet)
#   --prefix DIR       install root for source and venv (default /opt/amgs)
#   --state-dir DIR    the collector's state (default /var/lib/amgs-collector)
#   --backup-only      only copy the collector database to STATE_DIR/backups and exit
#   --dry-run          print what would be done, change nothing
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/amgs
ETC=/etc/amgs
STATE_DIR=/var/lib/amgs-collector
MOSQ_ETC=/etc/mosquitto
SITE=""
HOST=""
SANS=()
MAKE_CA=1
WHEELS=""
DRY=0
BACKUP_ONLY=0
USER_NAME=amgs

die() {
  echo "install-collector: $*" >&2
  exit 2
}
say() { echo "==> $*"; }
# Every change goes through run (or write_file): --dry-run prints instead.
run() {
  if ((DRY)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}
write_file() { # write_file PATH MODE OWNER:GROUP  (content on stdin)
  local path=$1 mode=$2 owner=$3 tmp
  if ((DRY)); then
    echo "+ write $path ($mode $owner):"
    sed 's/^/    /'
    return
  fi
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  mv "$tmp" "$path"
}

while (($#)); do
  case "$1" in
  --site) SITE="${2:?--site needs a value}"; shift 2 ;;
  --host) HOST="${2:?--host needs a value}"; shift 2 ;;
  --san) SANS+=("${2:?--san needs a value}"); shift 2 ;;
  --no-ca) MAKE_CA=0; shift ;;
  --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
  --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
  --state-dir) STATE_DIR="${2:?--state-dir needs a folder}"; shift 2 ;;
  --backup-only) BACKUP_ONLY=1; shift ;;
  --dry-run) DRY=1; shift ;;
  -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
  esac
done

VENV="$PREFIX/venv"
DB="$STATE_DIR/collector.db"

backup_database() {
  # SQLite's online backup API: a consistent copy even of a live WAL database.
  [[ -f "$DB" ]] || { say "no database at $DB yet: nothing to back up"; return 0; }
  local dest
  dest="$STATE_DIR/backups/collector-$(date -u +%Y%m%dT%H%M%SZ)-pre-upgrade.db"
  say "backing up $DB to $dest"
  run install -d -m 0750 "$STATE_DIR/backups"
  run python3 -c 'import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); dst.close()
ok = sqlite3.connect(sys.argv[2]).execute("PRAGMA integrity_check").fetchone()[0]
sys.exit(0 if ok == "ok" else "backup failed its integrity check")' "$DB" "$dest"
  if id "$USER_NAME" >/dev/null 2>&1; then
    run chown -R "$USER_NAME:$USER_NAME" "$STATE_DIR/backups"
  fi
}

upgrade_plain_http() {
  # An existing server.toml that serves plain HTTP on the network (what this script wrote before HTTPS was
  # the default) gets the site certificate; loopback binds (a TLS reverse proxy in front) and an explicit
  # allow_plain_http are left alone.
  local f=$1 bind
  grep -Eq '^[[:space:]]*(tls_cert_file|allow_plain_http)[[:space:]]*=' "$f" && return 0
  bind=$(sed -n 's/^[[:space:]]*bind[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | head -n 1)
  [[ -n "$bind" && ! "$bind" =~ ^(127\.|::1$|localhost$) ]] || return 0
  say "    $f serves plain HTTP on $bind: switching it to HTTPS with the site certificate"
  run sed -i "/^\[http\]/a tls_cert_file = \"$ETC/tls/server.crt\"\ntls_key_file = \"$ETC/tls/server.key\"" "$f"
}

if ((BACKUP_ONLY)); then
  backup_database
  exit 0
fi

[[ -n "$SITE" && -n "$HOST" ]] || die "give --site and --host (see --help)"
[[ "$SITE" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "--site '$SITE' is not an id (letters, digits, _ . -)"
((DRY)) || [[ $(id -u) -eq 0 ]] || die "run as root (or with --dry-run to see the steps)"
command -v apt-get >/dev/null || die "this script is for Debian/Ubuntu (apt-get not found)"
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/amgs-collector.service" ]] || die "$SRC is not an aMGS checkout"

say "1/7 system packages"
need=()
for pkg in mosquitto python3-venv openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
  echo "    mosquitto, python3-venv, openssl already installed"
fi

say "2/7 user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi

say "3/7 upgrade safety: stop the collector and back up its database before new code runs"
if systemctl is-active --quiet amgs-collector.service 2>/dev/null; then
  run systemctl stop amgs-collector.service
fi
backup_database

say "4/7 code: $SRC -> $PREFIX/src, venv $VENV with amgs[server]"
run install -d -m 0755 "$PREFIX"
run rm -rf "$PREFIX/src.new"
run install -d -m 0755 "$PREFIX/src.new"
run sh -c "tar -C '$SRC' --exclude=./.venv --exclude=./.git --exclude=./var -cf - . | tar -C '$PREFIX/src.new' -xf -"
run rm -rf "$PREFIX/src"
run mv "$PREFIX/src.new" "$PREFIX/src"
[[ -x "$VENV/bin/python" ]] || run python3 -m venv "$VENV"
pip_args=(-q)
[[ -n "$WHEELS" ]] && pip_args+=(--no-index --find-links "$WHEELS")
run "$VENV/bin/python" -m pip install "${pip_args[@]}" --upgrade pip
run "$VENV/bin/python" -m pip install "${pip_args[@]}" "$PREFIX/src[server]"
run ln -sf "$VENV/bin/amgs" /usr/local/bin/amgs

say "5/7 configuration in $ETC (existing files are kept)"
run install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [[ ! -f "$ETC/server.toml" ]]; then
  write_file "$ETC/server.toml" 0640 "root:$USER_NAME" <<EOF
# aMGS collector: every key is checked at start (docs/server.md). Written by install-collector.sh.
[mqtt]
host = "127.0.0.1"
port = 1883
username = "collector"
password_file = "$ETC/collector-mqtt-password"
site = "$SITE"

[notify.mqtt]
# the alert publisher's own account: the broker binds every client id to its account
username = "collector-alerts"
password_file = "$ETC/collector-alerts-mqtt-password"

[storage]
state_dir = "$STATE_DIR"
backup_before_migrate = true

[http]
# HTTPS with the site certificate (a copy of the broker's, made in step 6): https://$HOST:8443/
bind = "0.0.0.0"
port = 8443
tls_cert_file = "$ETC/tls/server.crt"
tls_key_file = "$ETC/tls/server.key"

[web]
# Scores are study data: on a shared network, viewing needs a login too (docs/deployment.md).
view_requires_login = true
EOF
else
  upgrade_plain_http "$ETC/server.toml"
fi
if [[ ! -f "$ETC/provision.toml" ]]; then
  write_file "$ETC/provision.toml" 0600 root:root <<EOF
# amgs provision: written by install-collector.sh (docs/deployment.md lists every key).
site = "$SITE"
broker_host = "$HOST"
broker_port = 8883
server_config = "$ETC/server.toml"
EOF
fi

say "6/7 broker: TLS certificates, $MOSQ_ETC/conf.d/amgs.conf, the collector's account"
run install -d -m 0750 -o root -g mosquitto "$MOSQ_ETC/amgs"
if ((MAKE_CA)) && [[ ! -f "$MOSQ_ETC/amgs/certs/ca.key" ]]; then
  run bash "$SRC/scripts/make-ca.sh" --dir "$MOSQ_ETC/amgs/certs" "$HOST" "${SANS[@]}"
elif ((!MAKE_CA)); then
  for f in ca.crt server.crt server.key; do
    ((DRY)) || [[ -f "$MOSQ_ETC/amgs/certs/$f" ]] || die "--no-ca: put the institution's $f in $MOSQ_ETC/amgs/certs/ first"
  done
fi
# The collector serves HTTPS with the same certificate (same host, same names, the CA devices and staff
# already trust); Mosquitto's copy is readable by its group only, so the collector gets its own.
run install -d -m 0750 -o root -g "$USER_NAME" "$ETC/tls"
run install -m 0644 -o root -g "$USER_NAME" "$MOSQ_ETC/amgs/certs/server.crt" "$ETC/tls/server.crt"
run install -m 0640 -o root -g "$USER_NAME" "$MOSQ_ETC/amgs/certs/server.key" "$ETC/tls/server.key"
run install -m 0644 "$SRC/systemd/mosquitto/amgs.conf" "$MOSQ_ETC/conf.d/amgs.conf"
if ! grep -qs "^include_dir $MOSQ_ETC/conf.d" "$MOSQ_ETC/mosquitto.conf"; then
  echo "include_dir $MOSQ_ETC/conf.d" | write_file "$MOSQ_ETC/mosquitto.conf.amgs-include" 0644 root:root
  run sh -c "cat '$MOSQ_ETC/mosquitto.conf.amgs-include' >>'$MOSQ_ETC/mosquitto.conf' && rm '$MOSQ_ETC/mosquitto.conf.amgs-include'"
fi
run "$VENV/bin/amgs" provision --config "$ETC/provision.toml" collector

say "7/7 database schema (the collector backs an existing database up first), systemd units"
run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR"
run runuser -u "$USER_NAME" -- "$VENV/bin/amgs" server migrate --config "$ETC/server.toml"
run install -m 0644 "$SRC/systemd/amgs-collector.service" /etc/systemd/system/amgs-collector.service
# the worker template for scale-out (docs/scale-out.md); installed, never enabled here
run install -m 0644 "$SRC/systemd/amgs-worker@.service" /etc/systemd/system/amgs-worker@.service
run systemctl daemon-reload
run systemctl enable mosquitto.service amgs-collector.service
run systemctl restart mosquitto.service
run systemctl restart amgs-collector.service

say "done. Dashboard and API: https://$HOST:8443/ (browsers trust it once $MOSQ_ETC/amgs/certs/ca.crt is"
echo "    installed as a trusted root; docs/deployment.md). Next:"
echo "    sudo -u $USER_NAME amgs server user add admin --role admin   # first dashboard account (asks for a password)"
echo "    sudo amgs provision device NAME --cage CAGE                  # one per device (docs/deployment.md)"
