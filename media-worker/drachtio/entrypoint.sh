#!/bin/bash
# Entrypoint of the drachtio-server sidecar (see Dockerfile). Bash, not POSIX sh: the address
# discovery speaks HTTP through bash's /dev/tcp, as the image has no curl.
#
# 1. Addresses (ADDRESS_DISCOVERY=ecs): SIP binds the task's private IPv4 (ECS task metadata v4)
#    and drachtio writes the task's public IPv4 (checkip.amazonaws.com; the internet gateway's 1:1
#    NAT) into Via and Contact (--external-ip), so the PBX's answers and in-dialog requests reach
#    the task. The worker discovers the same two addresses for SDP. No address, no start.
#    SIP_ADVERTISED_ADDRESS (as the worker's setting): `public` (default) as above, `private` (no
#    --external-ip: a PBX over VPN/Direct Connect reaches the private address), or an IPv4 to write.
# 2. TLS (DRACHTIO_TLS_PORT with DRACHTIO_TLS_PEM, the certificate chain then the private key, as
#    ECS injects the secret): written to files only this user can read; a sips contact on the port.
# 3. drachtio-server: applications on 127.0.0.1:9022; it reads DRACHTIO_SECRET from the environment
#    itself, so the secret is on no command line. Logs go to stdout.
set -euo pipefail

sip_port=${DRACHTIO_SIP_PORT:-5060}
: "${DRACHTIO_SECRET:?DRACHTIO_SECRET is required (the shared secret of the worker)}"

fail() {
  echo "drachtio entrypoint: $*" >&2
  exit 1
}

# GET http://host[:port]/path over bash's /dev/tcp (plain HTTP/1.0, 3 s); prints the body.
http_get() {
  local rest=${1#http://} hostport path host port
  hostport=${rest%%/*}
  # One leading slash: "//v4/…" would meet the ECS agent's path cleaning (a 301 this client does not follow).
  path=${rest#"$hostport"}
  path=/${path#/}
  host=${hostport%:*}
  port=80
  [[ $hostport == *:* ]] && port=${hostport##*:}
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3 && cat <&3' \
    "$host" "$port" "$path" | tr -d '\r' | sed '1,/^$/d'
}

ipv4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
private=${DRACHTIO_SIP_ADDRESS:-}
public=${DRACHTIO_PUBLIC_ADDRESS:-}
if [[ ${ADDRESS_DISCOVERY:-} == ecs ]]; then
  [[ -n ${ECS_CONTAINER_METADATA_URI_V4:-} ]] || fail 'ADDRESS_DISCOVERY=ecs but ECS_CONTAINER_METADATA_URI_V4 is not set'
  if [[ -z $private ]]; then
    private=$(http_get "$ECS_CONTAINER_METADATA_URI_V4" |
      sed -n 's/.*"IPv4Addresses"[[:space:]]*:[[:space:]]*\[[[:space:]]*"\([0-9.]*\)".*/\1/p') || true
    [[ $private =~ $ipv4 ]] || fail "task metadata at $ECS_CONTAINER_METADATA_URI_V4 names no IPv4 address"
  fi
  for attempt in 1 2 3; do
    [[ $public =~ $ipv4 ]] && break
    public=$(http_get "${PUBLIC_ADDRESS_URL:-http://checkip.amazonaws.com/}" | tr -d '[:space:]') || true
    [[ $public =~ $ipv4 ]] || sleep "$attempt"
  done
  [[ $public =~ $ipv4 ]] || fail "public address discovery failed (got '${public:0:40}'); is the task's public IP assigned?"
fi

case ${SIP_ADVERTISED_ADDRESS:-public} in
  public) ;;
  private) public= ;;
  *)
    [[ $SIP_ADVERTISED_ADDRESS =~ $ipv4 ]] || fail "SIP_ADVERTISED_ADDRESS must be public, private or an IPv4, got '$SIP_ADVERTISED_ADDRESS'"
    public=$SIP_ADVERTISED_ADDRESS
    ;;
esac

contact_host=${private:-*}
args=(--address 127.0.0.1 --port 9022 --contact "sip:${contact_host}:${sip_port};transport=udp,tcp")
[[ -n $public ]] && args+=(--external-ip "$public")

if [[ -n ${DRACHTIO_TLS_PORT:-} ]]; then
  [[ -n ${DRACHTIO_TLS_PEM:-} ]] || fail 'DRACHTIO_TLS_PORT is set but DRACHTIO_TLS_PEM (certificate and key) is not'
  umask 077
  tls=$(mktemp -d)
  printf '%s\n' "$DRACHTIO_TLS_PEM" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$tls/chain.pem"
  printf '%s\n' "$DRACHTIO_TLS_PEM" | sed -n '/-----BEGIN [A-Z ]*PRIVATE KEY-----/,/-----END [A-Z ]*PRIVATE KEY-----/p' >"$tls/key.pem"
  [[ -s $tls/chain.pem ]] || fail 'DRACHTIO_TLS_PEM holds no PEM certificate'
  [[ -s $tls/key.pem ]] || fail 'DRACHTIO_TLS_PEM holds no PEM private key'
  unset DRACHTIO_TLS_PEM
  # The certificate file carries the whole chain (leaf first); drachtio sends it as the chain too.
  args+=(--contact "sips:${contact_host}:${DRACHTIO_TLS_PORT};transport=tls")
  [[ -n $public ]] && args+=(--external-ip "$public")
  args+=(--cert-file "$tls/chain.pem" --chain-file "$tls/chain.pem" --key-file "$tls/key.pem")
fi

echo "drachtio entrypoint: sip ${contact_host}:${sip_port}${DRACHTIO_TLS_PORT:+, tls ${DRACHTIO_TLS_PORT}}, advertised ${public:-as bound}" >&2
exec "${DRACHTIO_BIN:-/opt/drachtio/bin/drachtio}" "${args[@]}" "$@"
