"""Serializes payments the way a producer using Confluent's serializers and
a Schema Registry does, for tests/registry.rs: reads a JSON object of
schemas (argv[3]) and JSON lines of payments on stdin, each with the writer
schema ("v1", "v2", "v3") and the framing ("id": magic 0x00 and schema id
in front, Confluent's default; "header": the GUID in the __value_schema_id
header, bare value; "guid": magic 0x01 and the GUID in front; "unknown": a
schema id the registry does not have; "malformed": no frame), and writes a
JSON line per payment: {"value": hex, "header": hex or null}. The subject
is TOPIC-value (TopicNameStrategy), as the producer of TOPIC would register.

    python registry_produce.py URL USER:PASSWORD SCHEMAS.json TOPIC < payments
"""

import json
import struct
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

url, auth, schemas_file, input_topic = sys.argv[1:5]
schemas = json.load(open(schemas_file))
client = SchemaRegistryClient({"url": url, "basic.auth.user.info": auth})
prefix = {v: AvroSerializer(client, schemas[v]) for v in schemas}
header = {v: AvroSerializer(client, schemas[v],
                            conf={"schema.id.serializer": header_schema_id_serializer})
          for v in schemas}

for line in sys.stdin:
    p = json.loads(line)
    version, framing = p.pop("version"), p.pop("framing")
    # v3 is registered under a subject of its own: the registry takes it,
    # and the pipeline cannot read it.
    topic = "elsewhere" if version == "v3" else input_topic
    value, head = None, None
    if framing in ("id", "unknown", "malformed"):
        value = prefix[version](p, SerializationContext(topic, MessageField.VALUE))
        if framing == "unknown":
            value = b"\x00" + struct.pack(">I", 999_999) + value[5:]
        elif framing == "malformed":
            value = b"\x07" + value[5:]
    else:
        headers = []
        bare = header[version](p, SerializationContext(topic, MessageField.VALUE, headers))
        guid = dict(headers)["__value_schema_id"]
        if framing == "header":
            value, head = bare, guid
        else:
            value = guid + bare
    print(json.dumps({"value": value.hex(), "header": head.hex() if head else None}))
