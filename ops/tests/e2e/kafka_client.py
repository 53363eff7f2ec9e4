#!/usr/bin/env python3
"""A Kafka client nobody on the team wrote (confluent-kafka from PyPI), for
Conductor's end-to-end tests.

  kafka_client.py produce BOOTSTRAP TOPIC N       -> produces N entity events, prints expected figures as JSON
  kafka_client.py consume BOOTSTRAP TOPIC EXPECTED TIMEOUT_S -> reads the topic from the start, prints a JSON summary
  kafka_client.py tags BOOTSTRAP TOPIC ISOLATION TIMEOUT_S -> reads every partition to its end with
      isolation.level ISOLATION (read_committed | read_uncommitted) and counts records per `ig-src`
      header (the source tag Conductor's writers put on every output); prints a JSON summary
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: F401

ENTITIES = 300


def produce(bootstrap, topic, n):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    latest = {}
    changes = 0
    for i in range(n):
        entity = (i * 7919) % ENTITIES
        tenant = "acme" if entity % 3 else "globex"
        version = i // ENTITIES + 1
        key = f"{tenant}/e{entity}"
        if latest.get(key, 0) < version:
            changes += 1
            latest[key] = version
        event = {
            "tenant": tenant,
            "kind": "EntityUpserted",
            "subject": f"e{entity}",
            "occurred_at": "2026-02-01T12:00:00Z",
            "actor": "python-e2e",
            "data": {"entity_type": "Person", "version": version, "attributes": {"given_name": f"name{i}", "i": i}},
        }
        p.produce(
            topic,
            key=key.encode(),
            value=json.dumps(event).encode(),
            headers=[("content-type", b"application/json"), ("ig-tenant", tenant.encode())],
        )
        if i % 500 == 0:
            p.poll(0)
    left = p.flush(30)
    if left:
        sys.exit(f"{left} messages not delivered")
    print(json.dumps({"produced": n, "entities": len(latest), "version_sum": sum(latest.values()), "changes": changes}))


def consume(bootstrap, topic, expected, timeout_s):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    seen, ids, tenants = 0, set(), set()
    deadline = time.time() + timeout_s
    while seen < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen += 1
        change = json.loads(m.value())
        ids.add(change["change_id"])
        tenants.add(change["tenant"])
    c.close()
    print(json.dumps({"records": seen, "unique_change_ids": len(ids), "tenants": sorted(tenants)}))


def tags(bootstrap, topic, isolation, timeout_s):
    """Reads each partition from offset 0 up to the end a reader of this
    isolation level can see: the last stable offset for read_committed (the
    broker answers it as the high watermark), the high watermark otherwise."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"e2e-tags-{uuid.uuid4()}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    meta = c.list_topics(topic, timeout=10)
    partitions = sorted(meta.topics[topic].partitions)
    ends = {}
    for p in partitions:
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
        ends[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    counts = {}
    records = 0
    done = {p for p in partitions if ends[p] == 0}
    deadline = time.time() + timeout_s
    while len(done) < len(partitions) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF: nothing more for this reader
                done.add(m.partition())
            continue
        records += 1
        tag = dict(m.headers() or []).get("ig-src", b"").decode()
        counts[tag] = counts.get(tag, 0) + 1
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    if len(done) < len(partitions):
        sys.exit(f"timed out reading {topic}: {len(done)} of {len(partitions)} partitions read to the end")
    print(json.dumps({
        "isolation": isolation,
        "records": records,
        "tags": len(counts),
        "duplicated_tags": sum(1 for n in counts.values() if n > 1),
        "untagged": counts.get("", 0),
    }))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "tags":
        tags(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        sys.exit(f"unknown command {cmd}")
