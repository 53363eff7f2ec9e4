"""Sends one job's run (START, RUNNING, COMPLETE) with the official
openlineage-python client, over HTTP or Kafka, the way a user's pipeline
does: a job with an input and an output, the output carrying a schema facet
and a column-lineage facet.

    openlineage_client.py http URL API_KEY JOB
    openlineage_client.py kafka BOOTSTRAP TOPIC JOB

Prints {"run_id": ..., "job": ...} as JSON.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import column_lineage_dataset, schema_dataset
from openlineage.client.uuid import generate_new_uuid

PRODUCER = "https://github.com/conductor/ops/tests/e2e/openlineage_client.py"
NS = "postgres://warehouse:5432"


def transport(argv):
    if argv[1] == "http":
        from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

        config = HttpConfig(url=argv[2], auth=ApiKeyTokenProvider({"api_key": argv[3]}))
        return HttpTransport(config), argv[4]
    if argv[1] == "kafka":
        from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

        config = KafkaConfig(
            config={"bootstrap.servers": argv[2], "acks": "all"},
            topic=argv[3],
            flush=True,
        )
        return KafkaTransport(config), argv[4]
    sys.exit(f"unknown transport {argv[1]!r}: use http or kafka")


def main(argv):
    t, job_name = transport(argv)
    client = OpenLineageClient(transport=t)
    run = Run(runId=str(generate_new_uuid()))
    job = Job(namespace="etl", name=job_name)
    orders = InputDataset(namespace=NS, name="public.orders")
    columns = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "day": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=NS,
                        name="public.orders",
                        field="created_at",
                        transformations=[
                            column_lineage_dataset.Transformation(type="DIRECT", subtype="TRANSFORMATION")
                        ],
                    )
                ]
            ),
            "total": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=NS,
                        name="public.orders",
                        field="amount",
                        transformations=[
                            column_lineage_dataset.Transformation(type="DIRECT", subtype="AGGREGATION")
                        ],
                    )
                ]
            ),
        }
    )
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name="day", type="DATE"),
            schema_dataset.SchemaDatasetFacetFields(name="total", type="NUMERIC"),
        ]
    )
    totals = OutputDataset(
        namespace=NS,
        name="public.daily_totals",
        facets={"schema": schema, "columnLineage": columns},
    )
    start = datetime(2026, 2, 1, 12, 0, 0, tzinfo=timezone.utc)
    for i, state in enumerate([RunState.START, RunState.RUNNING, RunState.COMPLETE]):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime=(start + timedelta(seconds=5 * i)).isoformat(),
                run=run,
                job=job,
                producer=PRODUCER,
                inputs=[orders] if state != RunState.START else [],
                outputs=[totals] if state == RunState.COMPLETE else [],
            )
        )
    client.close(timeout=10)
    print(json.dumps({"run_id": run.runId, "job": job_name}))


if __name__ == "__main__":
    main(sys.argv)
