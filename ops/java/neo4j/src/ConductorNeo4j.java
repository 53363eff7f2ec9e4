// A throwaway Neo4j server for tests and local development: the embedded
// community database with its Bolt connector on a loopback port, auth on,
// data in a scratch folder. Started by ops/start-neo4j.sh.
//
// Usage: java -cp CLASSPATH ConductorNeo4j HOME PORT PASSWORD
// Prints "ready bolt://127.0.0.1:PORT" once Bolt accepts logins as user
// neo4j with PASSWORD, then runs until it is killed (SIGTERM shuts it down
// cleanly; SIGKILL is fine for a throwaway). A HOME used before starts
// again with its data (the fault tests restart it).
import java.nio.file.Path;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;

public final class ConductorNeo4j {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: ConductorNeo4j HOME PORT PASSWORD");
            System.exit(2);
        }
        Path home = Path.of(args[0]);
        int port = Integer.parseInt(args[1]);
        String password = args[2];
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
            .setConfig(BoltConnector.enabled, true)
            .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
            .setConfig(HttpConnector.enabled, false)
            .setConfig(GraphDatabaseSettings.auth_enabled, true)
            // Small: tests hold a few thousand nodes; the JVM heap is set by the script.
            .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(64))
            .build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "neo4j-shutdown"));
        // The built-in user starts with password "neo4j" that must be changed
        // before use; set the requested one (community edition allows it).
        // A HOME started before (a restart in the fault tests) has it already,
        // and Neo4j refuses to set the same password again.
        try {
            dbms.database("system").executeTransactionally(
                "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                Map.of("password", password));
        } catch (RuntimeException e) {
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        }
        System.out.println("ready bolt://127.0.0.1:" + port);
        System.out.flush();
        Thread.currentThread().join();
    }
}
