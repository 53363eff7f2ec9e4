// Subscribes with the graphql-ws client (graphql-transport-ws protocol) and
// prints one JSON line per received change: {"cursor": ..., "event": ...}.
// Usage: node subscribe.mjs URL TOKEN COUNT [CURSOR]
// Exits 0 after COUNT changes; prints {"error": ...} and exits 2 on an error.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, countArg, cursor] = process.argv.slice(2);
const count = Number(countArg);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
});
const query = cursor
  ? 'subscription($c: String) { entityChanged(tenantId: "acme", cursor: $c) { cursor event } }'
  : 'subscription { entityChanged(tenantId: "acme", from: "earliest") { cursor event } }';
let seen = 0;
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: `timed out after ${seen} changes` }));
  process.exit(3);
}, 20000);
client.subscribe(
  { query, variables: cursor ? { c: cursor } : {} },
  {
    next: (msg) => {
      if (msg.errors) {
        console.log(JSON.stringify({ error: msg.errors }));
        process.exit(2);
      }
      console.log(JSON.stringify(msg.data.entityChanged));
      seen += 1;
      if (seen >= count) {
        clearTimeout(timer);
        client.dispose();
        process.exit(0);
      }
    },
    error: (err) => {
      console.log(JSON.stringify({ error: Array.isArray(err) ? err : String(err?.reason ?? err?.message ?? err) }));
      process.exit(2);
    },
    complete: () => {},
  },
);
