//! The Nexmark queries as streamfold pipelines: the pipeline part of each
//! query's config, and the second stage of the chained ones.

/// The pipeline part of each query's config.
pub(super) fn query(name: &str) -> Option<&'static str> {
    Some(match name {
        // Pass-through: a stateless pipeline writing every bid, every
        // field (decode, encode, produce).
        "q0" => "",
        // Currency conversion (map): the bid with its price in euros.
        "q1" => {
            r#"derive = [{ name = "price_eur", expr = "double(price) * 0.908" }]
select = ["auction", "bidder", "price_eur", "date_time"]"#
        }
        // Filter: the bids of some auctions.
        "q2" => {
            r#"where = "auction % 123 == 0"
select = ["auction", "price"]"#
        }
        // Bids per auction, hopping 10 s every 2 s.
        "q5" => {
            r#"group_by = "auction"
window = { kind = "hopping", size = "10s", advance = "2s" }
aggregates = [{ fn = "count" }]"#
        }
        // Highest bid per tumbling 10 s window: a global aggregate. Each
        // partition computes its window's maximum (no single hot
        // partition), so each window has one partial per partition; the
        // reader takes the maximum of those P rows.
        "q7" => {
            r#"derive = [{ name = "all", expr = "'all'" }]
group_by = "all"
window = { kind = "tumbling", size = "10s" }
aggregates = [{ fn = "max", field = "price" }, { fn = "count" }]"#
        }
        // Standard q5, first stage: bids per auction, hopping 10 s every
        // 2 s, and of each window's counts on the partition the auction
        // with the most bids (the second stage, in `second_stage`, takes
        // the largest of the partitions'). The input is keyed by auction,
        // so each auction's count is whole on its partition.
        "q5-hot" => {
            r#"group_by = "auction"
window = { kind = "hopping", size = "10s", advance = "2s" }
aggregates = [{ fn = "count" }]
per_window = [{ fn = "max-by", field = "count", value = ["key", "count"], name = "hot" }]"#
        }
        // Standard q7, first stage: each partition's highest bid per
        // tumbling 10 s window, with its bidder and auction.
        "q7-bid" => {
            r#"derive = [{ name = "all", expr = "'all'" }]
group_by = "all"
window = { kind = "tumbling", size = "10s" }
aggregates = [{ fn = "max-by", field = "price", value = ["price", "bidder", "auction"], name = "top" }]"#
        }
        _ => return None,
    })
}

/// The second stage of a chained query: a pipeline reading the first
/// stage's results from its one-partition output topic (so that one task
/// sees every partial result of a window), grouped by window end.
///
/// Its lateness covers the skew between the first stage's partitions: the
/// one-partition topic merges them, and a partition that reaches its
/// closers (ten minutes ahead) first moves the watermark past what the
/// others have yet to write. The bench's flush result (`flush.rs`) closes
/// every window once the first stage has written them all.
pub(super) fn second_stage(name: &str) -> Option<&'static str> {
    Some(match name {
        // The auction with the most bids in each window, from each
        // partition's (ties: the smallest auction id; Nexmark's q5 keeps
        // every tied auction).
        "q5-hot" => {
            r#"group_by = "window_end"
window = { kind = "tumbling", size = "2s" }
allowed_lateness = "15m"
aggregates = [{ fn = "max-by", field = "hot_count", value = ["hot_key", "hot_count"], name = "top" }]"#
        }
        // The highest bid of each window over all partitions.
        "q7-bid" => {
            r#"group_by = "window_end"
window = { kind = "tumbling", size = "10s" }
allowed_lateness = "15m"
aggregates = [{ fn = "max-by", field = "top_price", value = ["top_price", "top_bidder", "top_auction"], name = "highest" }]"#
        }
        _ => return None,
    })
}

/// The first stage's pipeline name of chained query `name`.
pub(super) fn first_stage_name(name: &str) -> String {
    format!("{name}-stage1")
}
