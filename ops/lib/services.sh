# Helpers shared by the scripts that install and start the test services
# (ops/install-*.sh, ops/start-*.sh). Sourced, not run.

TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
# One local Maven repository for every Java service, outside the clone.
MAVEN_REPO="$TOOLS/m2"

die() { echo "error: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The java to run services with: $JAVA_HOME/bin/java, else java on PATH; 17 or newer.
java_bin() {
    local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
    command -v "$java" >/dev/null 2>&1 \
        || die "java not found; install a JDK 17 or newer (apt-get install -y openjdk-17-jdk-headless) or set JAVA_HOME"
    local major
    major="$("$java" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
    [[ "${major%%.*}" =~ ^[0-9]+$ && "${major%%.*}" -ge 17 ]] \
        || die "$java is Java ${major:-unknown}; Apache Kafka 4 and Neo4j 5 need 17 or newer (set JAVA_HOME)"
    echo "$java"
}

# The javac matching java_bin.
javac_bin() {
    local javac="${JAVA_HOME:+$JAVA_HOME/bin/}javac"
    command -v "$javac" >/dev/null 2>&1 \
        || die "javac not found; install a JDK 17 or newer (apt-get install -y openjdk-17-jdk-headless) or set JAVA_HOME"
    echo "$javac"
}

# maven_classpath POM OUT: resolves POM's dependencies from Maven Central into
# $MAVEN_REPO and writes their classpath to OUT. Does nothing when OUT exists
# and every jar it names is still there (a warm machine makes no request).
maven_classpath() {
    local pom="$1" out="$2"
    # (The file has no trailing newline: `|| [[ -n $jar ]]` reads the last jar too.)
    if [[ -s "$out" ]] && tr ':' '\n' <"$out" | while read -r jar || [[ -n "$jar" ]]; do [[ -f "$jar" ]] || exit 1; done; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found; install Maven (apt-get install -y maven)"
    mkdir -p "$(dirname "$out")"
    echo "resolving $(basename "$(dirname "$pom")") from Maven Central into $MAVEN_REPO ..." >&2
    # (-q still prints colour resets; they are stripped.)
    # The plugin is pinned: unpinned, Maven takes its own old default (2.8).
    mvn -B -q -f "$pom" -Dmaven.repo.local="$MAVEN_REPO" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath \
        -Dmdep.outputFile="$out.tmp" 2>&1 \
        | sed 's/\x1b\[[0-9;]*m//g; /^$/d' >&2 \
        || die "Maven could not resolve $pom (is Maven Central reachable? see the output above)"
    mv "$out.tmp" "$out"
}

# wait_until SECONDS PID LOG CHECK...: runs CHECK every 0.1 s until it
# succeeds; fails (with LOG's tail) when PID dies or time runs out.
wait_until() {
    local seconds="$1" pid="$2" log="$3"
    shift 3
    local tries=$((seconds * 10))
    for _ in $(seq 1 "$tries"); do
        "$@" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the process exited during startup; last lines of $log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "error: not ready within $seconds s (log: $log); last lines:" >&2
    tail -n 30 "$log" >&2
    kill "$pid" 2>/dev/null || true
    return 1
}
