#!/bin/bash
# Container health check of the chimewatch image: GET /healthz on the port of CHIMEWATCH_LISTEN, with bash alone (no curl in the image).
#
# Every long-running command serves /healthz on its listen address (the gateway on its ingest port, also when
# --metrics-listen moves /metrics away; the aggregator and the archiver on theirs). A gateway that serves TLS itself
# (--tls-cert) cannot be checked in plain HTTP: leave its health to the load balancer there.
set -eu
listen="${CHIMEWATCH_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 5 status <&3
case "$status" in
  "HTTP/1.1 200"* | "HTTP/1.0 200"*) exit 0 ;;
  *) echo "unhealthy: ${status:-no answer}" >&2; exit 1 ;;
esac
