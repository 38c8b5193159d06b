//! How a field's values travel between a side and their canonical form: the
//! field's type, its normalizations, value maps, boolean inversion, lists
//! joined into one string, date formats. Reading never fails (a value that does
//! not fit its type is kept as it came, so the rules see the difference);
//! writing is reading's inverse, which compile checks exists.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// The canonical type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text (the default).
    Text,
    /// A number (HubSpot sends `"17"`, Mailchimp `17`).
    Number,
    /// `true` or `false` (HubSpot sends `"true"`).
    Bool,
    /// A calendar date, canonically `YYYY-MM-DD`.
    Date,
    /// A set of texts, canonically sorted without duplicates (tags, multi-select values).
    List,
}

impl FieldType {
    /// Parse a policy's `type`.
    pub fn parse(text: &str) -> Option<FieldType> {
        Some(match text {
            "text" => FieldType::Text,
            "number" => FieldType::Number,
            "bool" => FieldType::Bool,
            "date" => FieldType::Date,
            "list" => FieldType::List,
            _ => return None,
        })
    }
}

/// A normalization applied to text (and to each item of a list) when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Remove surrounding whitespace.
    Trim,
    /// Lowercase.
    Lowercase,
    /// Uppercase.
    Uppercase,
    /// Turn every run of whitespace into one space.
    CollapseSpaces,
    /// A phone number: `+` and digits only (`00` becomes `+`).
    Phone,
}

impl Normalize {
    /// Parse a policy's `normalize` entry.
    pub fn parse(text: &str) -> Option<Normalize> {
        Some(match text {
            "trim" => Normalize::Trim,
            "lowercase" => Normalize::Lowercase,
            "uppercase" => Normalize::Uppercase,
            "collapse_spaces" => Normalize::CollapseSpaces,
            "phone" => Normalize::Phone,
            _ => return None,
        })
    }

    fn apply(self, text: &str) -> String {
        match self {
            Normalize::Trim => text.trim().to_string(),
            Normalize::Lowercase => text.to_lowercase(),
            Normalize::Uppercase => text.to_uppercase(),
            Normalize::CollapseSpaces => text.split_whitespace().collect::<Vec<_>>().join(" "),
            Normalize::Phone => {
                let text = text.trim();
                let (plus, rest) = match (text.strip_prefix('+'), text.strip_prefix("00")) {
                    (Some(rest), _) => (true, rest),
                    (None, Some(rest)) => (true, rest),
                    (None, None) => (false, text),
                };
                let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
                if plus { format!("+{digits}") } else { digits }
            }
        }
    }
}

/// How a date is written to a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateFormat {
    /// `YYYY-MM-DD`.
    #[default]
    Date,
    /// Milliseconds since the epoch at midnight UTC, as text (HubSpot's date properties).
    EpochMs,
    /// `YYYY-MM-DDT00:00:00Z`.
    Iso,
}

impl DateFormat {
    /// Parse a policy's `*_format`.
    pub fn parse(text: &str) -> Option<DateFormat> {
        Some(match text {
            "date" => DateFormat::Date,
            "epoch_ms" => DateFormat::EpochMs,
            "iso" => DateFormat::Iso,
            _ => return None,
        })
    }
}

/// How one side of a field is read and written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SideCodec {
    /// Side value to canonical value, tried before the type's conversion.
    pub map: Vec<(Value, Value)>,
    /// Canonical value to side value for writing; the reverse of `map` if empty.
    pub map_write: Vec<(Value, Value)>,
    /// Booleans are stored the other way round on this side.
    pub invert: bool,
    /// Lists are one text joined by this separator on this side (HubSpot's `;`).
    pub split: Option<String>,
    /// How dates are written.
    pub format: DateFormat,
    /// The field is never written on this side.
    pub readonly: bool,
}

/// Everything that shapes a field's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    /// The canonical type.
    pub kind: FieldType,
    /// Normalizations, in order.
    pub normalize: Vec<Normalize>,
    /// Per side (left, right).
    pub sides: [SideCodec; 2],
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            kind: FieldType::Text,
            normalize: vec![Normalize::Trim],
            sides: Default::default(),
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A value as text, for maps and lists: strings as they are, others as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl Codec {
    /// A side's value in canonical form. Empty values (null, blank text, an empty
    /// list) are `Null`.
    pub fn read(&self, side: usize, raw: &Value) -> Value {
        self.read_with(&self.sides[side], raw)
    }

    /// A value written in canonical form (in a policy's examples) made exactly
    /// canonical: typed and normalized, with no side's maps.
    pub fn canonical(&self, value: &Value) -> Value {
        self.read_with(&SideCodec::default(), value)
    }

    fn read_with(&self, codec: &SideCodec, raw: &Value) -> Value {
        if is_empty(raw) {
            return Value::Null;
        }
        if let Some((_, mapped)) = codec
            .map
            .iter()
            .find(|(from, _)| text_of(from) == text_of(raw))
        {
            return self.normalized(mapped.clone());
        }
        let value = match self.kind {
            FieldType::Text => Value::String(text_of(raw)),
            FieldType::Number => read_number(raw).unwrap_or_else(|| raw.clone()),
            FieldType::Bool => match read_bool(raw) {
                Some(b) => Value::Bool(b != codec.invert),
                None => raw.clone(),
            },
            FieldType::Date => read_date(raw).map_or_else(|| raw.clone(), Value::String),
            FieldType::List => {
                let items: Vec<String> = match (raw, &codec.split) {
                    (Value::Array(items), _) => items.iter().map(text_of).collect(),
                    (other, Some(separator)) => text_of(other)
                        .split(separator.as_str())
                        .map(String::from)
                        .collect(),
                    (other, None) => vec![text_of(other)],
                };
                Value::Array(items.into_iter().map(Value::String).collect())
            }
        };
        self.normalized(value)
    }

    /// Apply the normalizations; lists become sorted sets, and empty becomes `Null`.
    fn normalized(&self, value: Value) -> Value {
        let normalize = |text: &str| {
            self.normalize
                .iter()
                .fold(text.to_string(), |t, n| n.apply(&t))
        };
        let value = match value {
            Value::String(text) if self.kind == FieldType::Text => Value::String(normalize(&text)),
            Value::Array(items) => {
                let mut items: Vec<String> = items
                    .iter()
                    .map(|i| normalize(&text_of(i)).trim().to_string())
                    .filter(|i| !i.is_empty())
                    .collect();
                items.sort();
                items.dedup();
                Value::Array(items.into_iter().map(Value::String).collect())
            }
            other => other,
        };
        if is_empty(&value) { Value::Null } else { value }
    }

    /// A canonical value as the side takes it.
    pub fn write(&self, side: usize, value: &Value) -> Value {
        if value.is_null() {
            return Value::Null;
        }
        let codec = &self.sides[side];
        let reverse: Vec<(Value, Value)> = if codec.map_write.is_empty() {
            codec
                .map
                .iter()
                .map(|(from, to)| (to.clone(), from.clone()))
                .collect()
        } else {
            codec.map_write.clone()
        };
        if let Some((_, to)) = reverse.iter().find(|(from, _)| from == value) {
            return to.clone();
        }
        match (self.kind, value) {
            (FieldType::Bool, Value::Bool(b)) => Value::Bool(*b != codec.invert),
            (FieldType::Date, Value::String(text)) => {
                write_date(text, codec.format).map_or_else(|| value.clone(), Value::String)
            }
            (FieldType::List, Value::Array(items)) => match &codec.split {
                Some(separator) => Value::String(
                    items
                        .iter()
                        .map(text_of)
                        .collect::<Vec<_>>()
                        .join(separator),
                ),
                None => value.clone(),
            },
            _ => value.clone(),
        }
    }
}

fn read_number(raw: &Value) -> Option<Value> {
    match raw {
        Value::Number(_) => Some(raw.clone()),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(n) = text.parse::<i64>() {
                return Some(Value::from(n));
            }
            let n = text.parse::<f64>().ok()?;
            serde_json::Number::from_f64(n).map(Value::Number)
        }
        _ => None,
    }
}

fn read_bool(raw: &Value) -> Option<bool> {
    match raw {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64()? != 0.0),
        Value::String(text) => match text.trim().to_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a text is a canonical date, `YYYY-MM-DD`.
pub fn is_date(text: &str) -> bool {
    Date::parse(text, format_description!("[year]-[month]-[day]")).is_ok()
}

fn read_date(raw: &Value) -> Option<String> {
    let text = text_of(raw);
    let text = text.trim();
    let day = format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(text, day) {
        return date.format(day).ok();
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return at.to_offset(time::UtcOffset::UTC).date().format(day).ok();
    }
    let ms: i64 = text.parse().ok()?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.date().format(day).ok()
}

fn write_date(canonical: &str, format: DateFormat) -> Option<String> {
    let day = format_description!("[year]-[month]-[day]");
    let date = Date::parse(canonical, day).ok()?;
    Some(match format {
        DateFormat::Date => canonical.to_string(),
        DateFormat::Iso => format!("{canonical}T00:00:00Z"),
        DateFormat::EpochMs => (date.midnight().assume_utc().unix_timestamp() * 1000).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn codec(kind: FieldType) -> Codec {
        Codec {
            kind,
            normalize: if kind == FieldType::Text {
                vec![Normalize::Trim]
            } else {
                vec![]
            },
            sides: Default::default(),
        }
    }

    /// Read on the left, then write back to the left: (canonical, written).
    fn round(codec: &Codec, raw: Value) -> (Value, Value) {
        let canonical = codec.read(0, &raw);
        let written = codec.write(0, &canonical);
        (canonical, written)
    }

    #[test]
    fn texts_are_normalized_and_blank_is_empty() {
        let mut c = codec(FieldType::Text);
        assert_eq!(round(&c, json!("  Ada ")).0, json!("Ada"));
        assert_eq!(c.read(0, &json!("   ")), Value::Null);
        c.normalize = vec![Normalize::CollapseSpaces, Normalize::Lowercase];
        assert_eq!(c.read(0, &json!(" Ada   LOVELACE ")), json!("ada lovelace"));
        c.normalize = vec![Normalize::Phone];
        assert_eq!(
            c.read(0, &json!("+1 (555) 010-0100")),
            json!("+15550100100")
        );
        assert_eq!(
            c.read(0, &json!("0044 20 7946 0000")),
            json!("+442079460000")
        );
        assert_eq!(c.read(0, &json!(17)), json!("17"));
    }

    #[test]
    fn numbers_and_booleans_come_from_hubspots_strings_and_go_back_as_values() {
        let n = codec(FieldType::Number);
        assert_eq!(round(&n, json!("17")), (json!(17), json!(17)));
        assert_eq!(n.read(0, &json!("2.5")), json!(2.5));
        assert_eq!(
            n.read(0, &json!("lots")),
            json!("lots"),
            "a value that does not fit is kept"
        );
        let mut b = codec(FieldType::Bool);
        assert_eq!(round(&b, json!("true")), (json!(true), json!(true)));
        b.sides[0].invert = true;
        assert_eq!(round(&b, json!("true")), (json!(false), json!(true)));
    }

    #[test]
    fn dates_are_canonical_days_written_in_each_sides_format() {
        let mut d = codec(FieldType::Date);
        assert_eq!(d.read(0, &json!("1572480000000")), json!("2019-10-31"));
        assert_eq!(
            d.read(0, &json!("2019-10-31T15:00:00Z")),
            json!("2019-10-31")
        );
        assert_eq!(d.read(0, &json!("2019-10-31")), json!("2019-10-31"));
        d.sides[0].format = DateFormat::EpochMs;
        assert_eq!(d.write(0, &json!("2019-10-31")), json!("1572480000000"));
        d.sides[0].format = DateFormat::Iso;
        assert_eq!(
            d.write(0, &json!("2019-10-31")),
            json!("2019-10-31T00:00:00Z")
        );
    }

    #[test]
    fn lists_are_sorted_sets_joined_where_a_side_joins_them() {
        let mut l = codec(FieldType::List);
        l.sides[0].split = Some(";".into());
        assert_eq!(
            round(&l, json!("b;a; ;b")),
            (json!(["a", "b"]), json!("a;b"))
        );
        assert_eq!(
            l.read(1, &json!(["vip", "beta", "vip"])),
            json!(["beta", "vip"])
        );
        assert_eq!(l.write(1, &json!(["a", "b"])), json!(["a", "b"]));
        assert_eq!(l.read(1, &json!([])), Value::Null);
    }

    #[test]
    fn value_maps_read_one_way_and_write_the_other() {
        let mut c = codec(FieldType::Bool);
        c.sides[1].map = vec![
            (json!("subscribed"), json!(false)),
            (json!("unsubscribed"), json!(true)),
        ];
        assert_eq!(c.read(1, &json!("unsubscribed")), json!(true));
        assert_eq!(c.write(1, &json!(false)), json!("subscribed"));
        c.sides[1].map_write = vec![(json!(false), json!("pending"))];
        assert_eq!(c.write(1, &json!(false)), json!("pending"));
    }
}
