//! A TOML document in which every key and value keeps its byte span, so that errors can
//! point at the exact key or value.

use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::error::{PolicyError, PolicyErrorKind};

/// A key with its span.
pub(crate) type Key = Spanned<String>;

/// The entries of a table, in file order.
pub(crate) type Entries = Vec<(Key, Spanned<Value>)>;

/// A TOML value whose children carry spans. Date-times are refused while reading.
#[derive(Debug)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float,
    Boolean(bool),
    Array(Vec<Spanned<Value>>),
    Table(Entries),
}

impl Value {
    /// The TOML type with an article, for "found ..." in messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// toml's private marker for date-time values (seen as a one-key map by `deserialize_any`).
const DATETIME_MARKER: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::String(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Integer(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                // TOML integers are 64-bit signed; saturate what a deserializer hands over
                // beyond that.
                Ok(Value::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
                Ok(Value::Float)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Boolean(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Value::Table(entries))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The text being parsed and its display name; turns spans into positioned errors.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) origin: &'a str,
}

impl Source<'_> {
    /// An error at the start of `span`.
    pub(crate) fn error(&self, span: Range<usize>, kind: PolicyErrorKind) -> PolicyError {
        let (line, col) = line_col(self.text, span.start);
        PolicyError {
            origin: self.origin.to_owned(),
            line,
            col,
            at: None,
            kind,
        }
    }

    /// Reads the whole document, turning TOML syntax errors into positioned errors.
    pub(crate) fn read(&self) -> Result<Spanned<Value>, PolicyError> {
        toml::from_str::<Spanned<Value>>(self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let kind = if e.message().contains(DATETIME_MARKER) {
                PolicyErrorKind::DateTime
            } else {
                PolicyErrorKind::Syntax(one_line(e.message()))
            };
            self.error(span, kind)
        })
    }
}

/// 1-based line and character column of byte `offset` (clamped to the text).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// toml's messages span several lines ("invalid table header\nexpected ..."); errors are one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4)); // after 'é' (2 bytes)
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 999), (3, 2));
        assert_eq!(line_col(t, 6), (2, 3)); // inside 'é' clamps back
    }

    #[test]
    fn read_keeps_spans_and_order() {
        let src = Source {
            text: "b = 1\na = \"x\"\n",
            origin: "t",
        };
        let doc = src.read().unwrap();
        let Value::Table(entries) = doc.into_inner() else {
            panic!("not a table")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.get_ref().as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(entries[1].1.span(), 10..13);
    }

    #[test]
    fn datetime_is_refused_with_position() {
        let src = Source {
            text: "name = \"x\"\nwhen = 1979-05-27\n",
            origin: "t",
        };
        let e = src.read().unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::DateTime);
        assert_eq!(e.line, 2);
    }
}
