#!/usr/bin/env bash
# Installs (Debian) and starts or stops the Redis and RabbitMQ servers the tests and the
# benchmark need, on loopback, without systemd; `install` also brings wrk for the benchmark
# and Chromium, in which the tests load the event documentation page headless.
#   scripts/services.sh start|stop|restart redis|rabbitmq|all
#   scripts/services.sh install [redis] [rabbitmq] [wrk] [chromium]
# State lives under ${TURNSTILE_SERVICES_DIR:-/tmp/turnstile-services}.
set -euo pipefail

STATE_DIR=${TURNSTILE_SERVICES_DIR:-/tmp/turnstile-services}
REDIS_PORT=${TURNSTILE_REDIS_PORT:-6379}
export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit@localhost}
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=${TURNSTILE_RABBITMQ_PORT:-5672}
export ERL_EPMD_ADDRESS=127.0.0.1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {  # [redis] [rabbitmq] [wrk] [chromium] [promtool] [busybox]: what to make sure of (default: all)
  local wanted=("$@") missing=()
  ((${#wanted[@]})) || wanted=(redis rabbitmq wrk chromium promtool busybox)
  for w in "${wanted[@]}"; do
    case $w in
      redis) command -v redis-server >/dev/null || missing+=(redis-server) ;;
      rabbitmq) command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server) ;;
      wrk) command -v wrk >/dev/null || missing+=(wrk) ;;  # the benchmark's load generator
      chromium) command -v chromium >/dev/null || missing+=(chromium) ;;  # renders /api/docs/events
      # checks and unit-tests the chart's alert rules (the server it comes with is not started)
      promtool) command -v promtool >/dev/null || missing+=(prometheus) ;;
      busybox) command -v busybox >/dev/null || missing+=(busybox) ;;
    esac
  done
  if ((${#missing[@]})); then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

redis_up() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }

start_redis() {
  redis_up && return 0
  mkdir -p "$STATE_DIR"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log"
  for _ in $(seq 1 50); do redis_up && return 0; sleep 0.1; done
  echo "redis did not start; see $STATE_DIR/redis.log" >&2; return 1
}

stop_redis() {
  redis_up || return 0
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do redis_up || return 0; sleep 0.1; done
}

rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbitmq() {
  rabbit_up && return 0
  mkdir -p "$STATE_DIR"
  rabbitmq-server -detached >"$STATE_DIR/rabbitmq.out" 2>&1 || true
  # await_startup exits at once while the node has not registered yet, so retry it.
  local deadline=$((SECONDS + 60))
  until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "rabbitmq did not start" >&2; return 1; }
    sleep 0.5
  done
}

stop_rabbitmq() {
  rabbit_up || return 0
  rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  epmd -kill >/dev/null 2>&1 || true
}

what=${2:-all}
case "${1:-}" in
  install) shift; install "$@" ;;
  start|stop)
    for s in $([ "$what" = all ] && echo redis rabbitmq || echo "$what"); do "$1_$s"; done ;;
  restart)
    for s in $([ "$what" = all ] && echo redis rabbitmq || echo "$what"); do "stop_$s"; "start_$s"; done ;;
  *) echo "usage: $0 install [what…] | start|stop|restart [redis|rabbitmq|all]" >&2; exit 2 ;;
esac
