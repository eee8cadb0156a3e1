"""Nexmark q5 and q7 in Pathway 0.33, for streamfold-bench.

Reads the JSON bids streamfold-bench pre-loads with Pathway's Kafka
connector, computes the standard queries with Pathway's own windowing
(`windowby` with `pw.temporal.sliding` / `pw.temporal.tumbling`) and
reducers, and writes one JSON row per window to the output topic (rows as
benches/bytewax/nexmark.py writes them):

- q5: bids per auction in hopping 10 s windows every 2 s, then per window
  the auction with the most bids (ties: the smallest auction id as a
  string, streamfold's max-by rule; Nexmark keeps every tied one).
- q7: the highest bid of each tumbling 10 s window, with its bidder and
  auction (ties: the smallest bidder, then auction).

The connector runs in `static` mode: it reads what the topic holds and
stops, and Pathway computes the result of that input and exits (its
streaming mode never ends; on a replay it arrives at the same rows, with
updates on the way). `--threads` sets Pathway's worker threads
(`PATHWAY_THREADS`, what `pathway spawn --threads` sets).

    python benches/pathway/nexmark.py --query q5 --broker HOST:PORT \
        --input bids --output OUT --group GROUP [--threads N]
"""

import argparse
import logging
import os
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--query", choices=["q5", "q7"], required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["PATHWAY_THREADS"] = str(args.threads)
    # Its progress log (INFO) is not the benchmark's business.
    logging.basicConfig(level=logging.WARNING)

    import pathway as pw

    logging.getLogger().setLevel(logging.WARNING)

    class Bid(pw.Schema):
        auction: int
        bidder: int
        price: int
        channel: str
        url: str
        date_time: int
        extra: str

    settings = {
        "bootstrap.servers": args.broker,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
    }
    bids = pw.io.kafka.read(
        settings, topic=args.input, schema=Bid, format="json", mode="static"
    )
    if args.query == "q5":
        counts = bids.windowby(
            bids.date_time,
            window=pw.temporal.sliding(hop=2_000, duration=10_000, origin=0),
            instance=bids.auction,
        ).reduce(
            auction=pw.this._pw_instance,
            window_end=pw.this._pw_window_end,
            count=pw.reducers.count(),
        )
        most = counts.groupby(counts.window_end).reduce(
            window_end=pw.this.window_end, top=pw.reducers.max(pw.this.count)
        )
        tied = counts.join(
            most,
            counts.window_end == most.window_end,
            counts.count == most.top,
        ).select(
            window_end=counts.window_end,
            count=counts.count,
            name=pw.apply(str, counts.auction),
        )
        best = tied.groupby(tied.window_end).reduce(
            window_end=pw.this.window_end,
            count=pw.reducers.max(pw.this.count),
            name=pw.reducers.min(pw.this.name),
        )
        out = best.select(
            window_end=pw.this.window_end,
            auction=pw.apply(int, pw.this.name),
            count=pw.this.count,
        )
    else:
        highest = bids.windowby(
            bids.date_time, window=pw.temporal.tumbling(duration=10_000, origin=0)
        ).reduce(
            window_end=pw.this._pw_window_end, price=pw.reducers.max(pw.this.price)
        )
        windowed = bids.select(
            window_end=(pw.this.date_time // 10_000) * 10_000 + 10_000,
            price=pw.this.price,
            bidder=pw.this.bidder,
            auction=pw.this.auction,
        )
        tied = windowed.join(
            highest,
            windowed.window_end == highest.window_end,
            windowed.price == highest.price,
        ).select(
            window_end=windowed.window_end,
            price=windowed.price,
            bidder=windowed.bidder,
            auction=windowed.auction,
        )
        by_bidder = tied.groupby(tied.window_end).reduce(
            window_end=pw.this.window_end,
            bidder=pw.reducers.min(pw.this.bidder),
        )
        out = (
            tied.join(
                by_bidder,
                tied.window_end == by_bidder.window_end,
                tied.bidder == by_bidder.bidder,
            )
            .select(
                window_end=tied.window_end,
                price=tied.price,
                bidder=tied.bidder,
                auction=tied.auction,
            )
            .groupby(pw.this.window_end)
            .reduce(
                window_end=pw.this.window_end,
                auction=pw.reducers.min(pw.this.auction),
                bidder=pw.reducers.max(pw.this.bidder),
                price=pw.reducers.max(pw.this.price),
            )
        )
    pw.io.kafka.write(out, {"bootstrap.servers": args.broker}, args.output, format="json")
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)


if __name__ == "__main__":
    sys.exit(main())
