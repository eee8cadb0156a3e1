//! `where` filters and `derive`d fields written in CEL (the Common
//! Expression Language of Kubernetes and Envoy), compiled once at start-up
//! and evaluated on the rayon pool.
//!
//! Fields of the record are variables: `amount_eur > 100.0 && country == "DE"`.
//! At start-up every expression is checked against the record layout: unknown
//! fields are rejected, and the expression is evaluated once on a record of
//! zero values, which catches type errors such as `amount + currency` and
//! fixes the type of a derived field.

use std::sync::Arc;

use apache_avro::types::Value;
use cel_interpreter::{Context, Program, Value as Cel};

use super::{Transform, TransformError};
use crate::record::{FieldType, Layout, Record};

/// A compiled expression and the record fields it reads.
struct Compiled {
    source: String,
    program: Program,
    root: Arc<Context<'static>>,
    vars: Vec<(String, usize, FieldType)>,
    /// The value of an expression that reads no field (`'all'`, `1 + 2`),
    /// computed once in [`Compiled::bind`]: CEL has no side effects and no
    /// clock, so it is the same for every record.
    constant: Option<Cel>,
}

fn cel_of(record: &Record, index: usize, ty: FieldType) -> Cel {
    let v = match ty {
        FieldType::String => record
            .str(index)
            .map(|s| Cel::String(Arc::new(s.to_string()))),
        FieldType::Long | FieldType::TimestampMillis => record.i64(index).map(Cel::Int),
        FieldType::Double => record.f64(index).map(Cel::Float),
        FieldType::Other => return Cel::Null,
    };
    v.unwrap_or(Cel::Null)
}

fn zero(ty: FieldType) -> Cel {
    match ty {
        FieldType::String => Cel::String(Arc::new(String::new())),
        FieldType::Long | FieldType::TimestampMillis => Cel::Int(0),
        FieldType::Double => Cel::Float(0.0),
        FieldType::Other => Cel::Null,
    }
}

fn describe(v: &Cel) -> &'static str {
    match v {
        Cel::Int(_) | Cel::UInt(_) => "int",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bool(_) => "bool",
        Cel::Null => "null",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        _ => "another type",
    }
}

impl Compiled {
    fn new(source: &str, root: Arc<Context<'static>>) -> Result<Self, String> {
        let program = super::parse::compile(source)?;
        Ok(Self {
            source: source.to_string(),
            program,
            root,
            vars: Vec::new(),
            constant: None,
        })
    }

    /// Resolves the variables against `layout`; returns the value on a
    /// record of zero values (type check).
    fn bind(&mut self, layout: &Layout) -> Result<Cel, String> {
        let refs = self.program.references();
        let mut vars = Vec::new();
        for name in refs.variables() {
            let i = layout.index_of(name).ok_or_else(|| {
                format!(
                    "expression {:?}: no field {name:?} in the record (after transforms)",
                    self.source
                )
            })?;
            vars.push((name.to_string(), i, layout.field(i).ty));
        }
        self.vars = vars;
        let mut ctx = self.root.new_inner_scope();
        for (name, _, ty) in &self.vars {
            ctx.add_variable_from_value(name.clone(), zero(*ty));
        }
        let fields: Vec<String> = self
            .vars
            .iter()
            .map(|(n, _, t)| format!("{n}: {}", t.describe()))
            .collect();
        let value = self.program.execute(&ctx).map_err(|e| {
            format!(
                "expression {:?} has a type error: {e} (fields: {})",
                self.source,
                fields.join(", ")
            )
        })?;
        self.constant = self.vars.is_empty().then(|| value.clone());
        Ok(value)
    }

    fn eval(&self, record: &Record) -> Result<Cel, TransformError> {
        if let Some(v) = &self.constant {
            return Ok(v.clone());
        }
        let mut ctx = self.root.new_inner_scope();
        for (name, i, ty) in &self.vars {
            ctx.add_variable_from_value(name.clone(), cel_of(record, *i, *ty));
        }
        self.program
            .execute(&ctx)
            .map_err(|e| TransformError(format!("expression {:?}: {e}", self.source)))
    }
}

fn root() -> Arc<Context<'static>> {
    Arc::new(Context::default())
}

/// `derive`: a new field computed from others.
pub struct Derive {
    name: String,
    expr: Compiled,
    index: usize,
    ty: FieldType,
    /// The field's value when the expression reads no field.
    constant: Option<Value>,
}

impl Derive {
    /// Compiles `source` for field `name`.
    ///
    /// # Errors
    /// When the expression does not parse.
    pub fn new(name: &str, source: &str) -> Result<Self, String> {
        Ok(Self {
            name: name.to_string(),
            expr: Compiled::new(source, root())?,
            index: usize::MAX,
            ty: FieldType::Other,
            constant: None,
        })
    }
}

impl Transform for Derive {
    fn name(&self) -> &str {
        "derive"
    }

    fn bind(&mut self, layout: &mut Layout) -> Result<(), String> {
        let v = self.expr.bind(layout)?;
        self.ty = match v {
            Cel::Int(_) | Cel::UInt(_) => FieldType::Long,
            Cel::Float(_) => FieldType::Double,
            Cel::String(_) => FieldType::String,
            other => {
                return Err(format!(
                    "derive {:?}: expression {:?} gives {}, expected int, double or string",
                    self.name,
                    self.expr.source,
                    describe(&other)
                ));
            }
        };
        self.index = layout.add(&self.name, self.ty);
        self.constant = match &self.expr.constant {
            Some(v) => Some(self.value(v.clone()).map_err(|e| e.0)?),
            None => None,
        };
        Ok(())
    }

    fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
        let value = match &self.constant {
            Some(v) => v.clone(),
            None => self.value(self.expr.eval(record)?)?,
        };
        record.set(self.index, value);
        Ok(())
    }
}

impl Derive {
    /// The field value of what the expression gave.
    fn value(&self, v: Cel) -> Result<Value, TransformError> {
        Ok(match (self.ty, v) {
            (FieldType::Long, Cel::Int(n)) => Value::Long(n),
            (FieldType::Long, Cel::UInt(n)) => Value::Long(n as i64),
            (FieldType::Double, Cel::Float(x)) => Value::Double(x),
            (FieldType::Double, Cel::Int(n)) => Value::Double(n as f64),
            (FieldType::String, Cel::String(s)) => Value::String(s.to_string()),
            (ty, other) => {
                return Err(TransformError(format!(
                    "derive {:?}: expression {:?} gave {}, expected {}",
                    self.name,
                    self.expr.source,
                    describe(&other),
                    ty.describe()
                )));
            }
        })
    }
}

/// `where`: keeps only records for which the expression is true.
pub struct Filter {
    expr: Compiled,
}

impl Filter {
    /// Compiles `source`.
    ///
    /// # Errors
    /// When the expression does not parse.
    pub fn new(source: &str) -> Result<Self, String> {
        Ok(Self {
            expr: Compiled::new(source, root())?,
        })
    }

    /// Checks the expression against `layout`: known fields, a bool result.
    ///
    /// # Errors
    /// A message naming the expression and the fields involved.
    pub fn bind(&mut self, layout: &Layout) -> Result<(), String> {
        match self.expr.bind(layout)? {
            Cel::Bool(_) => Ok(()),
            other => Err(format!(
                "where {:?} gives {}, expected bool",
                self.expr.source,
                describe(&other)
            )),
        }
    }

    /// Whether `record` passes.
    ///
    /// # Errors
    /// When the expression fails on this record.
    pub fn keep(&self, record: &Record) -> Result<bool, TransformError> {
        match self.expr.eval(record)? {
            Cel::Bool(b) => Ok(b),
            other => Err(TransformError(format!(
                "where {:?} gave {}, expected bool",
                self.expr.source,
                describe(&other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;

    fn layout() -> Layout {
        let f = |n: &str, ty| Field {
            name: n.into(),
            ty,
            nullable: false,
        };
        Layout::new(vec![
            f("amount", FieldType::Long),
            f("currency", FieldType::String),
            f("rate", FieldType::Double),
        ])
    }

    fn record() -> Record {
        Record {
            values: vec![
                Value::Long(1250),
                Value::String("EUR".into()),
                Value::Double(1.5),
            ],
        }
    }

    #[test]
    fn derive_adds_a_typed_field() {
        let mut l = layout();
        let mut d = Derive::new("big", "amount > 1000 ? 'big' : 'small'").unwrap();
        d.bind(&mut l).unwrap();
        assert_eq!(l.field(3).ty, FieldType::String);
        let mut r = record();
        d.apply(&mut r).unwrap();
        assert_eq!(r.str(3).unwrap(), "big");

        let mut m = Derive::new("scaled", "double(amount) * rate").unwrap();
        m.bind(&mut l).unwrap();
        m.apply(&mut r).unwrap();
        assert_eq!(r.f64(4).unwrap(), 1875.0);
    }

    #[test]
    fn an_expression_reading_no_field_is_computed_once_for_every_record() {
        let mut l = layout();
        let mut all = Derive::new("all", "'all'").unwrap();
        all.bind(&mut l).unwrap();
        let mut n = Derive::new("n", "size('abcd') * 2").unwrap();
        n.bind(&mut l).unwrap();
        assert_eq!(l.field(3).ty, FieldType::String);
        assert_eq!(l.field(4).ty, FieldType::Long);
        assert!(all.constant.is_some() && n.constant.is_some());
        for mut r in [record(), Record { values: Vec::new() }] {
            all.apply(&mut r).unwrap();
            n.apply(&mut r).unwrap();
            assert_eq!(r.str(3).unwrap(), "all");
            assert_eq!(r.i64(4).unwrap(), 8);
        }
        let mut never = Filter::new("1 > 2").unwrap();
        never.bind(&l).unwrap();
        assert!(!never.keep(&record()).unwrap());
        // One that reads a field is evaluated per record.
        let mut per_record = Derive::new("next", "amount + 1").unwrap();
        per_record.bind(&mut l).unwrap();
        assert!(per_record.constant.is_none());
        let mut r = record();
        per_record.apply(&mut r).unwrap();
        assert_eq!(r.i64(5).unwrap(), 1251);
    }

    #[test]
    fn filter_keeps_matching_records() {
        let mut f = Filter::new("currency == 'EUR' && amount >= 1000").unwrap();
        f.bind(&layout()).unwrap();
        assert!(f.keep(&record()).unwrap());
        let mut m = Filter::new("currency.matches('^E.R$')").unwrap();
        m.bind(&layout()).unwrap();
        assert!(m.keep(&record()).unwrap());
        let mut g = Filter::new("amount < 10").unwrap();
        g.bind(&layout()).unwrap();
        assert!(!g.keep(&record()).unwrap());
    }

    #[test]
    fn start_up_checks_name_the_expression_and_fields() {
        let e = Derive::new("x", "amount + currency")
            .unwrap()
            .bind(&mut layout())
            .unwrap_err();
        assert!(
            e.contains("\"amount + currency\"") && e.contains("type error"),
            "{e}"
        );
        assert!(
            e.contains("amount: long") && e.contains("currency: string"),
            "{e}"
        );
        let e = Filter::new("amout > 1")
            .unwrap()
            .bind(&layout())
            .unwrap_err();
        assert!(e.contains("no field \"amout\""), "{e}");
        let e = Filter::new("amount + 1")
            .unwrap()
            .bind(&layout())
            .unwrap_err();
        assert!(e.contains("expected bool"), "{e}");
        assert!(Filter::new("amount >").is_err());
    }
}
