//! Synthetic card payments for the demo, `streamfold produce --generate`
//! and tests: deterministic for a seed, with out-of-order and late events.
//! Also Nexmark bids, the input of the benchmarks.

use apache_avro::types::Value;
use serde::Serialize;

/// One payment, as in `schemas/payment.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payment {
    /// Unique id.
    pub payment_id: String,
    /// Merchant (the message key).
    pub merchant_id: String,
    /// Card identifier (clear text; the pipeline pseudonymises it).
    pub card_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Card country.
    pub country: String,
    /// Event time, epoch millis.
    pub event_time: i64,
}

impl Payment {
    /// The Avro record value (fields in schema order).
    pub fn to_avro_value(&self) -> Value {
        Value::Record(vec![
            ("payment_id".into(), Value::String(self.payment_id.clone())),
            (
                "merchant_id".into(),
                Value::String(self.merchant_id.clone()),
            ),
            ("card_id".into(), Value::String(self.card_id.clone())),
            ("amount".into(), Value::Long(self.amount)),
            ("currency".into(), Value::String(self.currency.clone())),
            ("country".into(), Value::String(self.country.clone())),
            ("event_time".into(), Value::TimestampMillis(self.event_time)),
        ])
    }
}

/// Currencies the generator uses, with the country most of them come from.
pub const CURRENCIES: &[(&str, &str)] = &[
    ("EUR", "DE"),
    ("USD", "US"),
    ("GBP", "GB"),
    ("CHF", "CH"),
    ("SEK", "SE"),
    ("JPY", "JP"),
];

/// Shape of the generated stream.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// Random seed: the same seed gives the same stream.
    pub seed: u64,
    /// Number of distinct merchants.
    pub merchants: u32,
    /// Event time of the first payment, epoch millis.
    pub start_ms: i64,
    /// Event time advances this much per payment.
    pub step_ms: i64,
    /// Payments are up to this much older than the stream's clock (out of order).
    pub jitter_ms: i64,
    /// Every n-th payment is late by `late_ms` (0 = none).
    pub late_every: u64,
    /// How far behind the clock a late payment is.
    pub late_ms: i64,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            merchants: 8,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            step_ms: 50,
            jitter_ms: 3_000,
            late_every: 97,
            late_ms: 120_000,
        }
    }
}

/// An endless, deterministic stream of payments.
#[derive(Debug, Clone)]
pub struct PaymentGenerator {
    options: GeneratorOptions,
    rng: fastrand::Rng,
    n: u64,
}

impl PaymentGenerator {
    /// A generator with the given options.
    pub fn new(options: GeneratorOptions) -> Self {
        let rng = fastrand::Rng::with_seed(options.seed);
        Self { options, rng, n: 0 }
    }
}

impl Iterator for PaymentGenerator {
    type Item = Payment;

    fn next(&mut self) -> Option<Payment> {
        let o = &self.options;
        let n = self.n;
        self.n += 1;
        let clock = o.start_ms + n as i64 * o.step_ms;
        let late = o.late_every > 0 && n > 0 && n.is_multiple_of(o.late_every);
        let event_time = if late {
            clock - o.late_ms
        } else {
            clock - self.rng.i64(0..=o.jitter_ms.max(0))
        };
        let (currency, country) = CURRENCIES[self.rng.usize(..CURRENCIES.len())];
        let amount = match currency {
            "JPY" => self.rng.i64(100..200_000),
            _ => self.rng.i64(50..500_000),
        };
        Some(Payment {
            payment_id: format!("p-{}-{n}", o.seed),
            merchant_id: format!("m-{}", self.rng.u32(..o.merchants.max(1))),
            card_id: format!("card-{:06}", self.rng.u32(..50_000)),
            amount,
            currency: currency.to_string(),
            country: country.to_string(),
            event_time,
        })
    }
}

/// One page view, as in `schemas/click.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Click {
    /// Unique id.
    pub event_id: String,
    /// Visitor (the message key).
    pub user_id: String,
    /// Page path.
    pub page: String,
    /// Time on the page, millis.
    pub dwell_ms: i64,
    /// Event time, epoch millis.
    pub event_time: i64,
}

impl Click {
    /// The Avro record value (fields in schema order).
    pub fn to_avro_value(&self) -> Value {
        Value::Record(vec![
            ("event_id".into(), Value::String(self.event_id.clone())),
            ("user_id".into(), Value::String(self.user_id.clone())),
            ("page".into(), Value::String(self.page.clone())),
            ("dwell_ms".into(), Value::Long(self.dwell_ms)),
            ("event_time".into(), Value::TimestampMillis(self.event_time)),
        ])
    }
}

/// Pages of the example shop, most popular first.
pub const PAGES: &[&str] = &[
    "/",
    "/search",
    "/product/42",
    "/product/7",
    "/cart",
    "/product/13",
    "/checkout",
    "/help",
];

/// An endless, deterministic stream of page views. Each visitor browses
/// for a while, then is away for longer than a typical session gap, on a
/// schedule of its own, so sessions start and end at different times.
#[derive(Debug, Clone)]
pub struct ClickGenerator {
    rng: fastrand::Rng,
    users: u32,
    start_ms: i64,
    step_ms: i64,
    n: u64,
}

impl ClickGenerator {
    /// Clicks of `users` visitors, one every `step_ms` of event time.
    pub fn new(seed: u64, users: u32, start_ms: i64, step_ms: i64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            users: users.max(1),
            start_ms,
            step_ms: step_ms.max(1),
            n: 0,
        }
    }

    fn active(&self, user: u32, clock: i64) -> bool {
        // Browse for two periods, then away for one (20 to 60 minutes).
        let period = 20 * 60_000 + i64::from(user % 9) * 5 * 60_000;
        (clock - self.start_ms + i64::from(user) * 7 * 60_000).div_euclid(period) % 3 != 2
    }
}

impl Iterator for ClickGenerator {
    type Item = Click;

    fn next(&mut self) -> Option<Click> {
        loop {
            let n = self.n;
            self.n += 1;
            let clock = self.start_ms + n as i64 * self.step_ms;
            let user = self.rng.u32(..self.users);
            if !self.active(user, clock) {
                continue;
            }
            // Popular pages more often: the minimum of two draws.
            let page = PAGES[self
                .rng
                .usize(..PAGES.len())
                .min(self.rng.usize(..PAGES.len()))];
            return Some(Click {
                event_id: format!("c-{n}"),
                user_id: format!("u-{user}"),
                page: page.to_string(),
                dwell_ms: 500 + self.rng.i64(0..120_000) * self.rng.i64(1..4) / 3,
                event_time: clock - self.rng.i64(0..2_000),
            });
        }
    }
}

/// The Avro schema of a Nexmark bid as the benchmarks publish it (JSON
/// or Avro): the `nexmark` crate's fields, `date_time` in epoch millis.
pub const NEXMARK_BID_SCHEMA: &str = r#"{
  "type": "record", "name": "Bid", "namespace": "nexmark",
  "fields": [
    {"name": "auction", "type": "long"},
    {"name": "bidder", "type": "long"},
    {"name": "price", "type": "long"},
    {"name": "channel", "type": "string"},
    {"name": "url", "type": "string"},
    {"name": "date_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "extra", "type": "string"}
  ]
}"#;

/// Nexmark bids from the `nexmark` crate's generator (default config).
#[cfg(feature = "nexmark")]
pub fn nexmark_bids() -> impl Iterator<Item = nexmark::event::Bid> {
    nexmark::EventGenerator::new(nexmark::config::NexmarkConfig::default())
        .with_type_filter(nexmark::event::EventType::Bid)
        .filter_map(|e| match e {
            nexmark::event::Event::Bid(b) => Some(b),
            _ => None,
        })
}

/// A bid as JSON of [`NEXMARK_BID_SCHEMA`], with event time `date_time` (ms).
#[cfg(feature = "nexmark")]
pub fn nexmark_bid_json(b: &nexmark::event::Bid, date_time: u64) -> String {
    serde_json::json!({
        "auction": b.auction, "bidder": b.bidder, "price": b.price,
        "channel": b.channel, "url": b.url, "date_time": date_time, "extra": b.extra,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_with_late_events() {
        let a: Vec<_> = PaymentGenerator::new(GeneratorOptions::default())
            .take(200)
            .collect();
        let b: Vec<_> = PaymentGenerator::new(GeneratorOptions::default())
            .take(200)
            .collect();
        assert_eq!(a, b);
        let o = GeneratorOptions::default();
        let late = a
            .iter()
            .enumerate()
            .filter(|(i, p)| p.event_time < o.start_ms + *i as i64 * o.step_ms - o.jitter_ms)
            .count();
        assert_eq!(late, 2);
    }

    #[test]
    fn visitors_go_away_long_enough_to_end_sessions() {
        let clicks: Vec<_> = ClickGenerator::new(1, 5, 0, 1_000).take(20_000).collect();
        let mut last: std::collections::HashMap<&str, i64> = Default::default();
        let mut breaks = 0;
        for c in &clicks {
            if let Some(prev) = last.insert(&c.user_id, c.event_time)
                && c.event_time - prev > 30 * 60_000
            {
                breaks += 1;
            }
        }
        assert!(breaks >= 5, "{breaks}");
    }
}
