"""Nexmark q5 and q7 in Bytewax 0.21, for streamfold-bench.

Reads the JSON bids streamfold-bench pre-loads (key = auction id, event time
in `date_time`, epoch milliseconds) with Bytewax's Kafka source, computes
the standard queries with Bytewax's own windowing operators and writes one
JSON row per window to the output topic:

- q5 (hot items): bids per auction in hopping 10 s windows every 2 s, then
  per window the auction with the most bids (ties: the smallest auction id
  as a string, streamfold's max-by rule; Nexmark keeps every tied one).
  Row: {"window_end", "auction", "count"}.
- q7 (highest bid): the highest bid of each tumbling 10 s window over all
  partitions, with its bidder and auction (ties: the smallest
  (price, bidder, auction)). Row: {"window_end", "auction", "bidder",
  "price"}.

Both run in two steps, as streamfold's chained pipelines do: per key (the
auction for q5, the Kafka partition for q7: keys whose bids arrive in event
time order, so Bytewax's per-key event clock drops none as late), then all
results under one key, windowed by their window's end. The source reads to the end of the topic and stops (`tail=False`);
windows still open then are closed, and the process exits.

    python benches/bytewax/nexmark.py --query q5 --broker HOST:PORT \
        --input bids --output OUT [--processes N] [--workers W]

With `--processes N` the dataflow runs as a cluster of N local processes
(one Python interpreter, so one GIL, each), started and waited for here.
"""

import argparse
import json
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import (
    EventClock,
    SlidingWindower,
    TumblingWindower,
    fold_window,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)


def at(ms):
    return EPOCH + ms * MS


def ms(t):
    return (t - EPOCH) // MS


def parse_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--query", choices=["q5", "q7"], required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--addresses")
    return parser.parse_args(argv)


def flow_for(args):
    size = timedelta(seconds=10)
    step = timedelta(seconds=2) if args.query == "q5" else size
    flow = Dataflow(f"nexmark-{args.query}")
    bids = kop.input(
        "bids", flow, brokers=[args.broker], topics=[args.input], tail=False
    ).oks
    # Event time only, as streamfold and Flink keep it: Bytewax's event
    # clock moves its watermark on with the system time as well (for live
    # input), which on a replay read faster or slower than it was written
    # makes bids late that are not. Its documented way out: a `now_getter`
    # that stands still, and no wake-ups by system time.
    def clock(ts, lateness):
        return EventClock(
            ts,
            wait_for_system_duration=lateness,
            now_getter=lambda: EPOCH,
            to_system_utc=lambda _t: None,
        )

    # Per key, bids arrive in event-time order: no lateness.
    first_clock = clock(lambda b: at(b["date_time"]), timedelta(0))
    # The second step sees a key's result when that key's window closes:
    # at its first bid past the window's end. Its one key merges the
    # results of every worker, and Bytewax aligns no watermark across
    # workers: a worker that reaches the end of its partitions first
    # (where the closers are, ten minutes ahead) moves the watermark past
    # what the others have yet to send. Its lateness has to cover that
    # skew, so on this replay its windows close at the end of the input.
    second_clock = clock(lambda r: at(r["window_end"]), timedelta(hours=1))
    if args.query == "q5":
        # Keyed by the bid's auction (the message key, except for the
        # closers streamfold-bench adds, auction 0 in every partition).
        def by_auction(m):
            bid = json.loads(m.value)
            return (str(bid["auction"]), bid)

        keyed = op.map("decode", bids, by_auction)
        counts = fold_window(
            "count",
            keyed,
            first_clock,
            SlidingWindower(length=size, offset=step, align_to=EPOCH),
            lambda: 0,
            lambda n, _bid: n + 1,
            lambda a, b: a + b,
            # Counting does not depend on the order: no sort per window.
            ordered=False,
        ).down

        def result(auction_wid_n):
            auction, (wid, n) = auction_wid_n
            end = ms(EPOCH + wid * step + size)
            return ("all", {"window_end": end, "auction": int(auction), "count": n})

        def better(best, r):
            if best is None:
                return r
            # The most bids; ties: the smallest auction id as a string.
            if (r["count"], _neg(r["auction"])) > (best["count"], _neg(best["auction"])):
                return r
            return best

    else:
        keyed = op.map(
            "decode",
            bids,
            lambda m: (str(m.partition), json.loads(m.value)),
        )

        def higher(best, b):
            # The highest price; ties: the smallest (price, bidder, auction).
            if best is None:
                return b
            return b if _bid_order(b) > _bid_order(best) else best

        partials = fold_window(
            "max",
            keyed,
            first_clock,
            TumblingWindower(length=size, align_to=EPOCH),
            lambda: None,
            higher,
            lambda a, b: higher(a, b) if b else a,
            ordered=False,
        ).down

        def result(part_wid_bid):
            _part, (wid, b) = part_wid_bid
            end = ms(EPOCH + wid * size + size)
            row = {
                "window_end": end,
                "auction": b["auction"],
                "bidder": b["bidder"],
                "price": b["price"],
            }
            return ("all", row)

        # A partition's highest bid against the others', by the same rule.
        better = higher

        counts = partials

    # One key: the second step sees every key's results (streamfold's
    # second stage reads them through one partition).
    by_window = op.map("by-window", counts, result)
    best = fold_window(
        "best",
        by_window,
        second_clock,
        TumblingWindower(length=step, align_to=EPOCH),
        lambda: None,
        better,
        lambda a, b: better(a, b) if b else a,
        ordered=False,
    ).down
    out = op.map(
        "encode",
        best,
        lambda k_wid_r: KafkaSinkMessage(
            str(k_wid_r[1][1]["window_end"]).encode(), json.dumps(k_wid_r[1][1]).encode()
        ),
    )
    kop.output("out", out, brokers=[args.broker], topic=args.output)
    return flow


def _bid_order(b):
    """A key under which the higher bid is larger: its price, then the
    smallest bidder, then the smallest auction."""
    return (b["price"], -b["bidder"], -b["auction"])


def _neg(auction):
    """A key under which the smallest auction id (as a string) is largest."""
    return [-ord(c) for c in str(auction)] + [0]


def _free_ports(n):
    """N ports free on this machine now (the cluster's members bind them)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_all(members):
    """The cluster's exit code: 0 once every member exited 0; the first
    failure's code as soon as one fails, the others killed (they would
    wait for it forever)."""
    while True:
        codes = [m.poll() for m in members]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            for m in members:
                if m.poll() is None:
                    m.kill()
                    m.wait()
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.05)


def main():
    args = parse_args(sys.argv[1:])
    if args.processes > 1 and args.process_id is None:
        # One process per member of the cluster, each running this script.
        addresses = ";".join(f"127.0.0.1:{p}" for p in _free_ports(args.processes))
        members = [
            subprocess.Popen(
                [sys.executable, __file__, *sys.argv[1:], "--process-id", str(i),
                 "--addresses", addresses]
            )
            for i in range(args.processes)
        ]
        sys.exit(_wait_all(members))
    flow = flow_for(args)
    if args.process_id is None:
        cli_main(flow, workers_per_process=args.workers)
    else:
        cli_main(
            flow,
            workers_per_process=args.workers,
            process_id=args.process_id,
            addresses=args.addresses.split(";"),
        )


if __name__ == "__main__":
    main()
