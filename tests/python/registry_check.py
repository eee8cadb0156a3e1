"""Drives a Schema Registry (the tests' stand-in) with confluent-kafka's own
SchemaRegistryClient and Avro serializers, and prints what they did as
JSON for tests/registry.rs to check with streamfold's client.

    python registry_check.py URL USER:PASSWORD
"""

import json
import sys

from confluent_kafka.schema_registry import (
    SchemaRegistryClient, Schema, header_schema_id_serializer, dual_schema_id_deserializer)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

url, auth = sys.argv[1], sys.argv[2]
V1 = json.dumps({"type": "record", "name": "Bid", "fields": [
    {"name": "auction", "type": "long"}, {"name": "price", "type": "int"}]})
# A field added with a default and int promoted to long: BACKWARD compatible.
V2 = json.dumps({"type": "record", "name": "Bid", "fields": [
    {"name": "auction", "type": "long"}, {"name": "price", "type": "long"},
    {"name": "channel", "type": "string", "default": "web"}]})
# A field added without a default: not.
V3 = json.dumps({"type": "record", "name": "Bid", "fields": [
    {"name": "auction", "type": "long"}, {"name": "price", "type": "long"},
    {"name": "channel", "type": "string", "default": "web"},
    {"name": "bidder", "type": "long"}]})

out = {}
try:
    SchemaRegistryClient({"url": url}).get_subjects()
    out["without_auth"] = "accepted"
except SchemaRegistryError as e:
    out["without_auth"] = e.http_status_code

client = SchemaRegistryClient({"url": url, "basic.auth.user.info": auth})
subject = "bids-value"
ctx = SerializationContext("bids", MessageField.VALUE)
framed = AvroSerializer(client, V1)({"auction": 7, "price": 12}, ctx)
out["framed_v1"] = framed.hex()
latest = client.get_latest_version(subject)
out["v1_id"] = latest.schema_id
out["v1_guid"] = latest.guid
assert client.get_schema(latest.schema_id).schema_str == V1

# Schema-id framing in the header (the GUID, magic 0x01), bare value (its
# deserializer wants at least 6 bytes of value, frame or not).
headers = []
hctx = SerializationContext("bids", MessageField.VALUE, headers)
bare = AvroSerializer(client, V1, conf={"schema.id.serializer": header_schema_id_serializer})(
    {"auction": 8_000_000_000_000, "price": 13}, hctx)
out["header_value"] = bare.hex()
out["header"] = dict(headers)["__value_schema_id"].hex()
back = AvroDeserializer(client, conf={"schema.id.deserializer": dual_schema_id_deserializer})(
    bare, hctx)
assert back == {"auction": 8_000_000_000_000, "price": 13}, back

out["v2_compatible"] = client.test_compatibility(subject, Schema(V2, "AVRO"))
out["v2_id"] = client.register_schema(subject, Schema(V2, "AVRO"))
out["v3_compatible"] = client.test_compatibility(subject, Schema(V3, "AVRO"))
try:
    client.register_schema(subject, Schema(V3, "AVRO"))
    out["v3_register"] = "accepted"
except SchemaRegistryError as e:
    out["v3_register"] = e.http_status_code
out["subjects"] = client.get_subjects()
out["versions"] = client.get_versions(subject)
out["by_guid"] = client.get_schema_by_guid(latest.guid).schema_str == V1
out["v2"] = V2
out["v1"] = V1
print(json.dumps(out))
