#!/usr/bin/env bash
# Installs the Neo4j server the graph tests run on: resolves org.neo4j:neo4j
# (community, ops/java/neo4j/pom.xml) with Maven from Maven Central into
# $CONDUCTOR_TOOLS/m2 and compiles the few lines of Java that start it with
# Bolt on (ops/java/neo4j/src/ConductorNeo4j.java) into
# $CONDUCTOR_TOOLS/neo4j-$NEO4J_VERSION/.
#
# Usage: ops/install-neo4j.sh
# Idempotent and offline once done. CONDUCTOR_TOOLS defaults to
# $HOME/.cache/conductor-tools. Prints the install folder on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/services.sh"

NEO4J_VERSION="5.26.30"
INSTALL="$TOOLS/neo4j-$NEO4J_VERSION"
SOURCE="$HERE/java/neo4j/src/ConductorNeo4j.java"
java_bin >/dev/null
maven_classpath "$HERE/java/neo4j/pom.xml" "$INSTALL/classpath"

# Recompile when the launcher changed (its hash is kept beside the class).
hash="$(sha256sum "$SOURCE" | cut -d' ' -f1)"
if [[ "$(cat "$INSTALL/classes/.source-sha256" 2>/dev/null)" != "$hash" ]]; then
    JAVAC="$(javac_bin)"
    rm -rf "$INSTALL/classes"
    mkdir -p "$INSTALL/classes"
    "$JAVAC" -nowarn -d "$INSTALL/classes" -cp "$(cat "$INSTALL/classpath")" "$SOURCE" >&2 \
        || die "compiling $SOURCE failed"
    echo "$hash" >"$INSTALL/classes/.source-sha256"
fi
echo "$INSTALL"
