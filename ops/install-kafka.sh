#!/usr/bin/env bash
# Installs the Apache Kafka broker the test suite runs on: resolves
# org.apache.kafka:kafka_2.13 (ops/java/kafka/pom.xml) with Maven from Maven
# Central into $CONDUCTOR_TOOLS/m2 and writes its classpath to
# $CONDUCTOR_TOOLS/kafka-$KAFKA_VERSION/classpath. Nothing is built.
#
# Usage: ops/install-kafka.sh
# Idempotent and offline once done. CONDUCTOR_TOOLS defaults to
# $HOME/.cache/conductor-tools. Prints the classpath file on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/services.sh"

KAFKA_VERSION="4.4.0"
CLASSPATH_FILE="$TOOLS/kafka-$KAFKA_VERSION/classpath"
java_bin >/dev/null
maven_classpath "$HERE/java/kafka/pom.xml" "$CLASSPATH_FILE"
echo "$CLASSPATH_FILE"
