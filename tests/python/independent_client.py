"""An independent Kafka client for streamfold's tests: publishes payments
encoded with fastavro through confluent-kafka, and checks the aggregates
streamfold writes, decoded with fastavro, against its own computation.

    python independent_client.py produce --bootstrap H:P --topic T --expect F
    python independent_client.py verify  --bootstrap H:P --topic T --expect F
    python independent_client.py committed --bootstrap H:P --topic T --group G --partitions N
    python independent_client.py delete-records --bootstrap H:P --topic T --partitions N --before O

Exits non-zero with a message naming the window when anything differs.
"""

import argparse
import io
import json
import pathlib
import random
import sys
import time

import fastavro
from confluent_kafka import Consumer, Producer

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "schemas"
RATES = {"EUR": 1.0, "USD": 0.92}  # per major unit, as config/payments.toml
WINDOW_MS = 60_000
LATENESS_MS = 5_000
START_MS = 1_767_225_600_000


def schema(name):
    return fastavro.parse_schema(json.loads((SCHEMAS / name).read_text()))


def produce(args):
    rng = random.Random(args.seed)
    payment = schema("payment.avsc")
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    merchants = [f"py-{i}" for i in range(6)]
    windows = {}
    clock = START_MS
    last = {}
    for i in range(args.n):
        clock += 40
        merchant = rng.choice(merchants)
        # Out of order by up to 3 s, within the allowed lateness.
        t = clock - rng.randrange(3_000)
        currency = rng.choice(list(RATES))
        amount = rng.randrange(100, 500_000)
        record = {
            "payment_id": f"py-{i}",
            "merchant_id": merchant,
            "card_id": f"card-{rng.randrange(1000)}",
            "amount": amount,
            "currency": currency,
            "country": "DE",
            "event_time": t,
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, payment, record)
        producer.produce(args.topic, key=merchant.encode(), value=buf.getvalue())
        producer.poll(0)
        start = t - t % WINDOW_MS
        windows.setdefault((merchant, start), []).append(amount / 100 * RATES[currency])
        last[merchant] = max(last.get(merchant, 0), t)
    # One payment per merchant an hour later closes its windows.
    for merchant in merchants:
        record = {
            "payment_id": f"closer-{merchant}",
            "merchant_id": merchant,
            "card_id": "card-0",
            "amount": 100,
            "currency": "EUR",
            "country": "DE",
            "event_time": clock + 3_600_000,
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, payment, record)
        producer.produce(args.topic, key=merchant.encode(), value=buf.getvalue())
    if producer.flush(30) != 0:
        sys.exit("produce: not every record was acknowledged within 30 s")
    expect = [
        {
            "key": m,
            "window_start": s,
            "window_end": s + WINDOW_MS,
            "count": len(v),
            "sum": sum(v),
            "min": min(v),
            "max": max(v),
        }
        for (m, s), v in sorted(windows.items())
    ]
    pathlib.Path(args.expect).write_text(json.dumps(expect))
    print(f"produce: {args.n} payments, {len(expect)} windows expected")


def verify(args):
    expect = {(w["key"], w["window_start"]): w for w in json.loads(pathlib.Path(args.expect).read_text())}
    stats = schema("merchant_window_stats.avsc")
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"independent-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    got = {}
    deadline = time.time() + args.timeout
    while time.time() < deadline and not set(expect) <= set(got):
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            sys.exit(f"verify: consumer error {m.error()}")
        row = fastavro.schemaless_reader(io.BytesIO(m.value()), stats, stats)
        if m.key().decode() != row["key"]:
            sys.exit(f"verify: record key {m.key()!r} is not the window key {row['key']!r}")
        window_start = row["window_start"]
        if hasattr(window_start, "timestamp"):  # fastavro decodes timestamp-millis to datetime
            window_start = round(window_start.timestamp() * 1000)
        got.setdefault((row["key"], window_start), []).append(row)
    consumer.close()
    missing = sorted(set(expect) - set(got))
    if missing:
        sys.exit(f"verify: {len(missing)} windows missing, first {missing[:3]}")
    extra = sorted(set(got) - set(expect))
    if extra:
        sys.exit(f"verify: windows nobody published records for: {extra[:3]}")
    for k, want in expect.items():
        for row in got[k]:
            if row["count"] != want["count"]:
                sys.exit(f"verify: window {k}: count {row['count']}, expected {want['count']}")
            for f in ("sum", "min", "max"):
                if abs(row[f] - want[f]) > 1e-6 * max(1.0, abs(want[f])):
                    sys.exit(f"verify: window {k}: {f} {row[f]}, expected {want[f]}")
    print(f"verify: {len(expect)} windows match")


def committed(args):
    """Prints, as JSON, each partition's committed offset for the group
    (-1 when none) and its log end offset."""
    from confluent_kafka import TopicPartition

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group})
    parts = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    out = {}
    for tp in consumer.committed(parts, timeout=10):
        _, high = consumer.get_watermark_offsets(TopicPartition(args.topic, tp.partition), timeout=10)
        out[tp.partition] = [tp.offset if tp.offset >= 0 else -1, high]
    consumer.close()
    print(json.dumps(out))


def delete_records(args):
    """Deletes the records before offset --before of each partition
    (Kafka's DeleteRecords, as retention would)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    parts = [TopicPartition(args.topic, p, args.before) for p in range(args.partitions)]
    for tp, f in admin.delete_records(parts).items():
        f.result()
    print("deleted")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["produce", "verify", "committed", "delete-records"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--expect")
    p.add_argument("--group")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--before", type=int, default=0)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    commands = {"produce": produce, "verify": verify, "committed": committed, "delete-records": delete_records}
    commands[args.command](args)


if __name__ == "__main__":
    main()
