"""Nexmark q5 and q7 in Quix Streams, for streamfold-bench.

Reads the JSON bids streamfold-bench pre-loads (key = auction id, event time
in `date_time`), windows them with Quix Streams' own API, writes the final
windows to the output topic and commits at-least-once. streamfold-bench
times it until the group's committed offsets reach the end of every topic
it reads.

    python benches/quix/nexmark.py --query q5 --broker HOST:PORT \
        --input bids --output OUT --group GROUP --state-dir DIR
"""

import argparse
import logging

from quixstreams import Application


def event_time(value, headers, timestamp, timestamp_type):
    return value["date_time"]


def quiet(*args):
    # Late bids are dropped like streamfold drops them; logging each one
    # would cost Quix Streams time the comparison should not charge it.
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--query", choices=["q5", "q7"], required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    args = parser.parse_args()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel=logging.WARNING,
    )
    bids = app.topic(
        args.input,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=event_time,
    )
    out = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(bids)
    if args.query == "q5":
        # Bids per auction (the message key), hopping 10 s every 2 s.
        sdf = sdf.hopping_window(
            duration_ms=10_000, step_ms=2_000, on_late=quiet
        ).count().final()
    else:
        # Highest bid per tumbling 10 s window over all auctions: Quix
        # Streams keeps window state per message key, so a global
        # aggregate re-keys every bid to one key (a repartition topic).
        # That topic interleaves the input partitions, so the window gets
        # a minute of grace.
        sdf = sdf.group_by(lambda bid: "all", name="all")
        sdf = sdf.apply(lambda bid: bid["price"])
        sdf = sdf.tumbling_window(
            duration_ms=10_000, grace_ms=60_000, on_late=quiet
        ).max().final()
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
