#!/usr/bin/env bash
# Starts a throwaway single-node Apache Kafka (KRaft, broker and controller in
# one process) on loopback, for the tests and for trying Conductor by hand.
#
# Usage: ops/start-kafka.sh [DIR [PORT]]
#   DIR   storage directory (created; default: a new temporary one). The
#         broker's log is DIR/kafka.log.
#   PORT  client port on 127.0.0.1 (default: a free one). The controller
#         takes another free port.
# Once the broker answers, prints on stdout (shell assignments, so
# `eval "$(ops/start-kafka.sh)"` works):
#   KAFKA_BOOTSTRAP=127.0.0.1:PORT
#   KAFKA_PID=PID
# (Check the script's exit status: `env="$(ops/start-kafka.sh)" && eval "$env"`.)
# Its pid is also in DIR/pid as soon as it starts. A DIR used before is
# started again with its data and ports.
# Stop it with `kill $KAFKA_PID`. Installs the broker first if needed
# (ops/install-kafka.sh). KAFKA_HEAP (default 512m) sets the JVM heap.
#
# Settings are those of a one-broker test cluster: replication factor 1 for
# the internal topics (consumer offsets, transaction state, share groups), no
# initial rebalance delay, few internal partitions (quick start), topics
# auto-created off (Conductor creates its topics; a typo must not make one).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/services.sh"

[[ $# -le 2 ]] || { echo "usage: $0 [DIR [PORT]]" >&2; exit 2; }
DIR="${1:-$(mktemp -d -t conductor-kafka.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
LOG="$DIR/kafka.log"
# A reused DIR keeps its ports: the controller's address is part of the
# cluster metadata formatted into it.
PORT="${2:-$(cat "$DIR/client.port" 2>/dev/null || free_port)}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "error: PORT must be a number, got '$PORT'" >&2; exit 2; }
port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT"
CONTROLLER_PORT="$(cat "$DIR/controller.port" 2>/dev/null || free_port)"
echo "$PORT" >"$DIR/client.port"
echo "$CONTROLLER_PORT" >"$DIR/controller.port"
# Readiness is read from this run's log only.
[[ -f "$LOG" ]] && mv "$LOG" "$LOG.previous"

JAVA="$(java_bin)"
CLASSPATH_FILE="$("$HERE/install-kafka.sh")"

cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
cat >"$DIR/log4j2.yaml" <<'YAML'
Configuration:
  Appenders:
    Console: { name: STDOUT, PatternLayout: { pattern: "[%d] %p %m (%c)%n" } }
  Loggers:
    Root: { level: INFO, AppenderRef: [ { ref: STDOUT } ] }
    Logger:
      - { name: org.apache.kafka.common.config, level: WARN }
YAML

JVM=(-Xms128m "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true
     "-Dlog4j2.configurationFile=$DIR/log4j2.yaml" -cp "$(cat "$CLASSPATH_FILE")")

if [[ ! -f "$DIR/data/meta.properties" ]]; then
    cluster_id="$("$JAVA" "${JVM[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG" | tail -n1)" \
        || { tail -n 20 "$LOG" >&2; die "Kafka's StorageTool could not make a cluster id (log: $LOG)"; }
    "$JAVA" "${JVM[@]}" kafka.tools.StorageTool format --standalone \
        -t "$cluster_id" -c "$DIR/server.properties" >>"$LOG" 2>&1 \
        || { tail -n 20 "$LOG" >&2; die "formatting Kafka's storage in $DIR failed (log: $LOG)"; }
fi

"$JAVA" "${JVM[@]}" kafka.Kafka "$DIR/server.properties" </dev/null >>"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$DIR/pid"

# The port opens before the broker has registered with its controller; a
# client is only served once this line is logged.
broker_ready() { port_open "$PORT" && grep -q "Kafka Server started" "$LOG"; }
wait_until 60 "$PID" "$LOG" broker_ready || die "Apache Kafka did not start (dir $DIR)"
echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
echo "KAFKA_PID=$PID"
