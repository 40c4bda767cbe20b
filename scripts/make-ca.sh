#!/usr/bin/env bash
# Make the private certificate authority and the broker's TLS certificate for an aMGS site (openssl).
#
# Usage: scripts/make-ca.sh [options] SERVER_NAME [SAN ...]
#   SERVER_NAME   the name devices use to reach the collector host (becomes CN and the first DNS SAN)
#   SAN           more names or addresses the broker is reached by: plain names become DNS:..., addresses IP:...
# Options:
#   --dir DIR         where the files go (default /etc/mosquitto/amgs/certs)
#   --ca-days N       CA lifetime in days (default 3650)
#   --days N          server certificate lifetime in days (default 825)
#   --server-only     keep the existing CA, issue a new server certificate (renewal, new SANs)
#   --group GROUP     group that may read server.key (default mosquitto when that group exists)
#
# Files written in DIR:
#   ca.key      CA private key, mode 0600: only this script needs it; keep it off the network if you can
#   ca.crt      CA certificate: copied into every device bundle by `amgs provision device`
#   server.key  broker private key, mode 0640 root:GROUP
#   server.crt  broker certificate signed by ca.crt, with the SANs above (devices check the host name)
#
# An institution that runs its own CA skips this script: put the broker certificate and key it issues
# in server.crt / server.key and its CA chain in ca.crt (see docs/deployment.md).
set -euo pipefail

DIR=/etc/mosquitto/amgs/certs
CA_DAYS=3650
DAYS=825
SERVER_ONLY=0
GROUP=""

die() {
  echo "make-ca: $*" >&2
  exit 2
}

while (($#)); do
  case "$1" in
  --dir) DIR="${2:?--dir needs a folder}"; shift 2 ;;
  --ca-days) CA_DAYS="${2:?--ca-days needs a number}"; shift 2 ;;
  --days) DAYS="${2:?--days needs a number}"; shift 2 ;;
  --server-only) SERVER_ONLY=1; shift ;;
  --group) GROUP="${2:?--group needs a group name}"; shift 2 ;;
  -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
  --) shift; break ;;
  -*) die "unknown option $1 (see --help)" ;;
  *) break ;;
  esac
done
(($#)) || die "give the collector's host name, e.g. make-ca.sh collector.vivarium.example 10.1.2.3"
[[ "$CA_DAYS" =~ ^[0-9]+$ && "$DAYS" =~ ^[0-9]+$ ]] || die "--ca-days and --days take whole numbers of days"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"

SERVER_NAME="$1"
shift
[[ "$SERVER_NAME" =~ ^[A-Za-z0-9.-]+$ ]] || die "server name '$SERVER_NAME' is not a host name"

ip_re='^([0-9]{1,3}\.){3}[0-9]{1,3}$|:'
sans=()
for name in "$SERVER_NAME" "$@"; do
  if [[ "$name" =~ $ip_re ]]; then
    sans+=("IP:$name")
  elif [[ "$name" =~ ^[A-Za-z0-9.*-]+$ ]]; then
    sans+=("DNS:$name")
  else
    die "'$name' is neither a host name nor an IP address"
  fi
done
SAN_LINE=$(IFS=,; echo "${sans[*]}")

if [[ -z "$GROUP" ]] && getent group mosquitto >/dev/null 2>&1; then
  GROUP=mosquitto
fi

mkdir -p "$DIR"
chmod 0755 "$DIR"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ((SERVER_ONLY)); then
  [[ -f "$DIR/ca.key" && -f "$DIR/ca.crt" ]] || die "--server-only needs $DIR/ca.key and $DIR/ca.crt (run without it first)"
else
  [[ ! -e "$DIR/ca.key" ]] || die "$DIR/ca.key exists: refusing to replace the CA every device trusts (use --server-only to renew the server certificate)"
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key"
  openssl req -new -x509 -sha256 -key "$work/ca.key" -days "$CA_DAYS" \
    -subj "/O=aMGS/CN=aMGS site CA $(date -u +%Y-%m-%d)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$work/ca.crt"
  install -m 0600 "$work/ca.key" "$DIR/ca.key"
  install -m 0644 "$work/ca.crt" "$DIR/ca.crt"
fi

openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key"
openssl req -new -sha256 -key "$work/server.key" -subj "/O=aMGS/CN=$SERVER_NAME" -out "$work/server.csr"
cat >"$work/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $SAN_LINE
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -sha256 -in "$work/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -extfile "$work/server.ext" \
  -out "$work/server.crt" 2>/dev/null
openssl verify -CAfile "$DIR/ca.crt" "$work/server.crt" >/dev/null

install -m 0640 "$work/server.key" "$DIR/server.key"
install -m 0644 "$work/server.crt" "$DIR/server.crt"
if [[ -n "$GROUP" ]]; then
  chgrp "$GROUP" "$DIR/server.key" || die "could not give group $GROUP read access to $DIR/server.key"
fi
echo "make-ca: server certificate for $SAN_LINE in $DIR (CA: $DIR/ca.crt)"
