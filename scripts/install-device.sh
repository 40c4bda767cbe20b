#!/usr/bin/env bash
# Install or upgrade the aMGS cage device on Raspberry Pi OS Bookworm (also works on Debian 12 with a
# USB camera): picamera2 from the OS, /opt/amgs/venv with amgs[device], the bundle from
# `amgs provision device`, amgs-device.service. See docs/deployment.md.
#
# Usage: sudo scripts/install-device.sh --bundle DIR [options]
#   --bundle DIR       the folder `amgs provision device NAME` wrote (device.toml, ca.crt, mqtt-password);
#                      leave it out to upgrade the code of a device installed before (its /etc/amgs is kept)
#   --edgetpu          also install the Coral Edge TPU runtime (libedgetpu1-std from a configured apt source)
#   --edgetpu-deb FILE install the Edge TPU runtime from this .deb (no internet)
#   --ntp HOST         use HOST (e.g. the collector) as time server: a Pi has no battery-backed clock
#   --wheels DIR       install Python packages from this folder only (no internet)
#   --prefix DIR       install root for source and venv (default /opt/amgs)
#   --no-start         install and enable, but do not (re)start the agent
#   --dry-run          print what would be done, change nothing
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/amgs
ETC=/etc/amgs
BUNDLE=""
EDGETPU=0
EDGETPU_DEB=""
NTP=""
WHEELS=""
START=1
DRY=0
USER_NAME=amgs
# The OS's Python: picamera2 and libcamera are installed for it, and the venv sees its site-packages.
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY=python3

die() {
  echo "install-device: $*" >&2
  exit 2
}
say() { echo "==> $*"; }
run() {
  if ((DRY)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

while (($#)); do
  case "$1" in
  --bundle) BUNDLE="${2:?--bundle needs a folder}"; shift 2 ;;
  --edgetpu) EDGETPU=1; shift ;;
  --edgetpu-deb) EDGETPU=1; EDGETPU_DEB="${2:?--edgetpu-deb needs a file}"; shift 2 ;;
  --ntp) NTP="${2:?--ntp needs a host}"; shift 2 ;;
  --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
  --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
  --no-start) START=0; shift ;;
  --dry-run) DRY=1; shift ;;
  -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
  esac
done

VENV="$PREFIX/venv"
if [[ -z "$BUNDLE" ]]; then
  [[ -f "$ETC/device.toml" ]] || die "give --bundle DIR (made on the collector host by: amgs provision device NAME --cage CAGE)"
  echo "install-device: no --bundle: upgrading the code, keeping $ETC as it is"
else
  for f in device.toml ca.crt mqtt-password; do
    [[ -f "$BUNDLE/$f" ]] || die "$BUNDLE/$f is missing: copy the whole bundle folder from the collector host"
  done
fi
[[ -z "$EDGETPU_DEB" || -f "$EDGETPU_DEB" ]] || die "--edgetpu-deb $EDGETPU_DEB does not exist"
((DRY)) || [[ $(id -u) -eq 0 ]] || die "run as root (or with --dry-run to see the steps)"
command -v apt-get >/dev/null || die "this script is for Raspberry Pi OS / Debian (apt-get not found)"
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/amgs-device.service" ]] || die "$SRC is not an aMGS checkout"

# shellcheck disable=SC1091  # the OS's file, read at run time
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")
[[ "$codename" == bookworm ]] || echo "install-device: warning: tested on Bookworm, this is '$codename'" >&2
is_pi=0
grep -qs "Raspberry Pi" /proc/device-tree/model && is_pi=1

say "1/6 system packages"
pkgs=(python3-venv python3-pip)
((is_pi)) && pkgs+=(python3-picamera2)
need=()
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ((EDGETPU)); then
  if [[ -n "$EDGETPU_DEB" ]]; then
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$EDGETPU_DEB"
  else
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libedgetpu1-std
  fi
fi
if [[ -n "$NTP" ]]; then
  run install -d -m 0755 /etc/systemd/timesyncd.conf.d
  if ((DRY)); then
    echo "+ write /etc/systemd/timesyncd.conf.d/amgs.conf: [Time] NTP=$NTP"
  else
    printf '[Time]\nNTP=%s\n' "$NTP" >/etc/systemd/timesyncd.conf.d/amgs.conf
  fi
  run systemctl restart systemd-timesyncd.service
fi

say "2/6 user $USER_NAME (groups video, plugdev)"
getent group plugdev >/dev/null || run groupadd --system plugdev
if ! id "$USER_NAME" >/dev/null 2>&1; then
  run useradd --system --user-group --groups video,plugdev --home-dir /var/lib/amgs-device --no-create-home \
    --shell /usr/sbin/nologin "$USER_NAME"
fi

say "3/6 code: $SRC -> $PREFIX/src, venv $VENV (system site-packages: picamera2) with amgs[device]"
if systemctl is-active --quiet amgs-device.service 2>/dev/null; then
  run systemctl stop amgs-device.service # it flushes; the outbox in /var/lib/amgs-device stays
fi
run install -d -m 0755 "$PREFIX"
run rm -rf "$PREFIX/src.new"
run install -d -m 0755 "$PREFIX/src.new"
run sh -c "tar -C '$SRC' --exclude=./.venv --exclude=./.git --exclude=./var -cf - . | tar -C '$PREFIX/src.new' -xf -"
run rm -rf "$PREFIX/src"
run mv "$PREFIX/src.new" "$PREFIX/src"
[[ -x "$VENV/bin/python" ]] || run "$PY" -m venv --system-site-packages "$VENV"
pip_args=(-q)
[[ -n "$WHEELS" ]] && pip_args+=(--no-index --find-links "$WHEELS")
# picamera2's compiled parts (simplejpeg, libcamera bindings) are built against the OS's numpy: keep it.
constraints="$PREFIX/constraints.txt"
sys_numpy=$("$PY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
if ((DRY)); then
  echo "+ write $constraints: ${sys_numpy:+numpy==$sys_numpy}"
else
  echo "${sys_numpy:+numpy==$sys_numpy}" >"$constraints"
fi
run "$VENV/bin/python" -m pip install "${pip_args[@]}" --upgrade pip
run "$VENV/bin/python" -m pip install "${pip_args[@]}" --constraint "$constraints" "$PREFIX/src[device]"
run ln -sf "$VENV/bin/amgs" /usr/local/bin/amgs

say "4/6 bundle -> $ETC"
if [[ -n "$BUNDLE" ]]; then
  run install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
  if [[ -f "$ETC/device.toml" ]] && ! cmp -s "$ETC/device.toml" "$BUNDLE/device.toml"; then
    run cp -p "$ETC/device.toml" "$ETC/device.toml.bak-$(date -u +%Y%m%dT%H%M%SZ)"
  fi
  run install -m 0640 -o root -g "$USER_NAME" "$BUNDLE/device.toml" "$ETC/device.toml"
  run install -m 0640 -o root -g "$USER_NAME" "$BUNDLE/mqtt-password" "$ETC/mqtt-password"
  run install -m 0644 -o root -g root "$BUNDLE/ca.crt" "$ETC/ca.crt"
else
  echo "    kept: $ETC/device.toml, mqtt-password, ca.crt"
fi

say "5/6 check the config"
run "$VENV/bin/amgs" device check --config "$ETC/device.toml"

say "6/6 systemd unit"
run install -m 0644 "$SRC/systemd/amgs-device.service" /etc/systemd/system/amgs-device.service
run systemctl daemon-reload
run systemctl enable amgs-device.service
((START)) && run systemctl restart amgs-device.service

say "done. Follow it with: journalctl -fu amgs-device; its status is on the collector's dashboard"
