//! Converts an amount in minor units of any currency to the base currency.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;

use super::{Transform, TransformError, bind_field};
use crate::record::{FieldType, Layout, Record};

/// Currency conversion with a fixed rate table from the configuration.
pub struct ConvertCurrency {
    amount_field: String,
    currency_field: String,
    output_field: String,
    base: String,
    /// currency → base units per *minor* unit of that currency.
    per_minor_unit: HashMap<String, f64>,
    indexes: [usize; 3],
}

impl ConvertCurrency {
    /// Builds the rate table.
    ///
    /// # Errors
    /// When a rate is not a positive number or the base currency has no rate 1.
    pub fn new(
        amount_field: &str,
        currency_field: &str,
        output_field: &str,
        base: &str,
        rates: &BTreeMap<String, f64>,
        minor_units: &BTreeMap<String, u32>,
    ) -> Result<Self, String> {
        let mut per_minor_unit = HashMap::new();
        for (code, rate) in rates {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(format!(
                    "rates.{code}: expected a positive number, found {rate}"
                ));
            }
            let digits = minor_units.get(code).copied().unwrap_or(2);
            if digits > 6 {
                return Err(format!(
                    "minor_units.{code}: expected 0 to 6 digits, found {digits}"
                ));
            }
            per_minor_unit.insert(code.clone(), rate / 10f64.powi(digits as i32));
        }
        match rates.get(base) {
            Some(r) if *r == 1.0 => {}
            Some(r) => {
                return Err(format!(
                    "rates.{base}: the base currency must have rate 1, found {r}"
                ));
            }
            None => {
                return Err(format!(
                    "rates: expected a rate for the base currency {base}, found none"
                ));
            }
        }
        for code in minor_units.keys() {
            if !rates.contains_key(code) {
                return Err(format!(
                    "minor_units.{code}: expected a currency listed in rates, found none"
                ));
            }
        }
        Ok(Self {
            amount_field: amount_field.to_string(),
            currency_field: currency_field.to_string(),
            output_field: output_field.to_string(),
            base: base.to_string(),
            per_minor_unit,
            indexes: [usize::MAX; 3],
        })
    }

    /// `amount` minor units of `currency` in major units of the base currency.
    ///
    /// # Errors
    /// When the currency has no rate.
    pub fn convert(&self, amount: i64, currency: &str) -> Result<f64, TransformError> {
        let rate = self.per_minor_unit.get(currency).ok_or_else(|| {
            TransformError(format!(
                "convert-currency: no rate for currency {currency:?} (field {:?}); add it to rates",
                self.currency_field
            ))
        })?;
        Ok(amount as f64 * rate)
    }
}

impl Transform for ConvertCurrency {
    fn name(&self) -> &str {
        "convert-currency"
    }

    fn bind(&mut self, layout: &mut Layout) -> Result<(), String> {
        let amount = bind_field(
            layout,
            &self.amount_field,
            &[FieldType::Long],
            "long (minor units)",
        )?;
        let currency = bind_field(layout, &self.currency_field, &[FieldType::String], "string")?;
        let out = layout.add(&self.output_field, FieldType::Double);
        self.indexes = [amount, currency, out];
        Ok(())
    }

    fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
        let [amount, currency, out] = self.indexes;
        let field_err = |name: &str, e: crate::record::FieldError| {
            TransformError(format!("convert-currency: field {name:?}: {e}"))
        };
        let a = record
            .i64(amount)
            .map_err(|e| field_err(&self.amount_field, e))?;
        let c = record
            .str(currency)
            .map_err(|e| field_err(&self.currency_field, e))?;
        let converted = self.convert(a, c)?;
        record.set(out, Value::Double(converted));
        Ok(())
    }
}

impl std::fmt::Debug for ConvertCurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertCurrency")
            .field("base", &self.base)
            .field("currencies", &self.per_minor_unit.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> ConvertCurrency {
        let rates = BTreeMap::from([
            ("EUR".to_string(), 1.0),
            ("USD".to_string(), 0.5),
            ("JPY".to_string(), 0.01),
        ]);
        let minor = BTreeMap::from([("JPY".to_string(), 0)]);
        ConvertCurrency::new("amount", "currency", "amount_eur", "EUR", &rates, &minor).unwrap()
    }

    #[test]
    fn converts_minor_units_with_per_currency_digits() {
        let t = eur();
        assert_eq!(t.convert(1234, "EUR").unwrap(), 12.34);
        assert_eq!(t.convert(1000, "USD").unwrap(), 5.0);
        assert_eq!(t.convert(500, "JPY").unwrap(), 5.0);
        let e = t.convert(1, "XXX").unwrap_err();
        assert!(e.0.contains("\"XXX\""), "{e}");
    }

    #[test]
    fn rejects_a_rate_table_without_the_base() {
        let rates = BTreeMap::from([("USD".to_string(), 0.9)]);
        let e = ConvertCurrency::new("a", "c", "o", "EUR", &rates, &BTreeMap::new()).unwrap_err();
        assert!(e.contains("EUR"), "{e}");
    }
}
