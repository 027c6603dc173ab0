#!/usr/bin/env bash
# Installs (Debian) and starts or stops the Redis and RabbitMQ servers the tests and the
# benchmark need, on loopback, without systemd; `install` also brings wrk for the benchmark,
# Chromium (the tests load the event documentation page headless), promtool and busybox.
#   scripts/services.sh start|stop|restart redis|rabbitmq|cluster|all   (all: redis and rabbitmq)
#   scripts/services.sh reset rabbitmq   (stop it and delete its data: the next start is empty)
#   scripts/services.sh start|stop cluster-node PORT   (one master of the cluster; it comes back empty)
#   scripts/services.sh install [redis] [rabbitmq] [wrk] [chromium] [promtool] [busybox]
# `cluster` is a Redis Cluster of three masters on TURNSTILE_REDIS_CLUSTER_PORTS (no replicas,
# `cluster-require-full-coverage no`: with a master down, the slots of the others still answer).
# State lives under ${TURNSTILE_SERVICES_DIR:-/tmp/turnstile-services}, RabbitMQ's too (its
# database and log, not the system's /var/lib/rabbitmq): a broker that tests filled with queues
# is wiped by `reset` instead of slowing every later start while it recovers them.
set -euo pipefail

STATE_DIR=${TURNSTILE_SERVICES_DIR:-/tmp/turnstile-services}
REDIS_PORT=${TURNSTILE_REDIS_PORT:-6379}
read -r -a CLUSTER_PORTS <<<"${TURNSTILE_REDIS_CLUSTER_PORTS:-7000 7001 7002}"
export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit@localhost}
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=${TURNSTILE_RABBITMQ_PORT:-5672}
export ERL_EPMD_ADDRESS=127.0.0.1
RABBITMQ_DIR=$STATE_DIR/rabbitmq
export RABBITMQ_MNESIA_BASE=$RABBITMQ_DIR/mnesia RABBITMQ_LOG_BASE=$RABBITMQ_DIR/log
RABBITMQ_LOG=$RABBITMQ_LOG_BASE/${RABBITMQ_NODENAME}.log

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {  # [redis] [rabbitmq] [wrk] [chromium] [promtool] [busybox]: what to make sure of (default: all)
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

node_up() { redis-cli -p "$1" ping >/dev/null 2>&1; }

# One cluster node; its nodes-PORT.conf survives a stop, so a restarted master rejoins with its
# slots (and no data: nothing is saved). A short node timeout keeps failure detection quick.
start_cluster_node() {
  local port=$1 dir="$STATE_DIR/cluster"
  node_up "$port" && return 0
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 1000 \
    --cluster-require-full-coverage no --dir "$dir" \
    --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
  for _ in $(seq 1 50); do node_up "$port" && return 0; sleep 0.1; done
  echo "redis cluster node $port did not start; see $dir/redis-$port.log" >&2; return 1
}

stop_cluster_node() {
  local port=$1
  node_up "$port" || return 0
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do node_up "$port" || return 0; sleep 0.1; done
}

cluster_ok() {  # every node that answers says the cluster is whole again
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

await_cluster() {
  for _ in $(seq 1 150); do cluster_ok && return 0; sleep 0.2; done
  echo "redis cluster did not reach cluster_state:ok" >&2; return 1
}

start_cluster() {
  local port nodes=()
  for port in "${CLUSTER_PORTS[@]}"; do start_cluster_node "$port"; nodes+=("127.0.0.1:$port"); done
  # A fresh set of nodes knows no slots yet: make them one cluster.
  if redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q '^cluster_slots_assigned:0'; then
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  await_cluster
}

# The nodes keep their nodes-PORT.conf: a later start brings the same cluster back, empty.
stop_cluster() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do stop_cluster_node "$port"; done
}

rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbitmq() {
  rabbit_up && return 0
  # The server runs as the rabbitmq user (the Debian wrapper switches to it): its directories
  # must be that user's.
  mkdir -p "$STATE_DIR"
  as_root install -d -o rabbitmq -g rabbitmq "$RABBITMQ_DIR" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  rabbitmq-server -detached >"$STATE_DIR/rabbitmq.out" 2>&1 || true
  # await_startup exits at once while the node has not registered yet, so retry it.
  local deadline=$((SECONDS + 90))
  until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "rabbitmq did not start in 90 s; the end of $RABBITMQ_LOG:" >&2
      tail -n 40 "$RABBITMQ_LOG" "$STATE_DIR/rabbitmq.out" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

stop_rabbitmq() {
  rabbit_up || return 0
  rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  epmd -kill >/dev/null 2>&1 || true
}

reset_rabbitmq() {
  # A node still recovering its queues neither answers `status` nor stops while it recovers:
  # ask it for a bounded time, then end what is left of the node of this name.
  timeout -k 5 20 rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  local pid environment
  for pid in $(pgrep -x beam.smp || true); do
    environment=$(as_root cat "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' || true)
    if grep -qx "RABBITMQ_NODENAME=$RABBITMQ_NODENAME" <<<"$environment"; then
      as_root kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  epmd -kill >/dev/null 2>&1 || true
  as_root rm -rf "$RABBITMQ_DIR"
}

what=${2:-all}
case "${1:-}" in
  install) shift; install_packages "$@" ;;
  start|stop)
    if [ "$what" = cluster-node ]; then
      "$1_cluster_node" "${3:?which port}"
      if [ "$1" = start ]; then await_cluster; fi
      exit
    fi
    for s in $([ "$what" = all ] && echo redis rabbitmq || echo "$what"); do "$1_$s"; done ;;
  reset)
    [ "$what" = rabbitmq ] || { echo "reset: only rabbitmq" >&2; exit 2; }
    reset_rabbitmq ;;
  restart)
    for s in $([ "$what" = all ] && echo redis rabbitmq || echo "$what"); do "stop_$s"; "start_$s"; done ;;
  *) echo "usage: $0 install | start|stop|restart [redis|rabbitmq|cluster|all] | reset rabbitmq | start|stop cluster-node PORT" >&2; exit 2 ;;
esac
