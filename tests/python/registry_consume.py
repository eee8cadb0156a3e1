"""Reads registry-framed values (hex, one per line on stdin) with
Confluent's deserializer against a Schema Registry, as a consumer of
streamfold's output does, and prints each as a JSON line (timestamps as
epoch milliseconds): `AvroDeserializer`, or with `json` the
`JSONDeserializer`, which validates each value against the JSON Schema
its id names.

    python registry_consume.py URL USER:PASSWORD TOPIC [avro|json] < values
"""

import datetime
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

url, auth, topic = sys.argv[1:4]
kind = sys.argv[4] if len(sys.argv) > 4 else "avro"
client = SchemaRegistryClient({"url": url, "basic.auth.user.info": auth})
if kind == "json":
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer

    deserialize = JSONDeserializer(None, schema_registry_client=client)
else:
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    deserialize = AvroDeserializer(client)
ctx = SerializationContext(topic, MessageField.VALUE)


def plain(v):
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    return v


for line in sys.stdin:
    record = deserialize(bytes.fromhex(line.strip()), ctx)
    print(json.dumps({k: plain(v) for k, v in record.items()}))
