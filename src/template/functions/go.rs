//! Go's view of template values: how sprig converts arguments (spf13/cast),
//! what it counts as empty, how `fmt` prints, and how arguments are read.

use gtmpl_ng::{Number, Value};

use super::Fail;
use crate::template::bytes;

/// The arguments of one call, read as a Go function's typed parameters.
pub(super) struct Args<'a> {
    args: &'a [Value],
}

impl<'a> Args<'a> {
    /// Exactly `n` arguments, as Go checks a call against the signature.
    pub(super) fn exactly(args: &'a [Value], n: usize, want: &'static str) -> Result<Self, Fail> {
        if args.len() != n {
            return Err(Fail::Arity {
                want,
                got: args.len(),
            });
        }
        Ok(Self { args })
    }

    /// At least `n` (a variadic signature).
    pub(super) fn at_least(args: &'a [Value], n: usize, want: &'static str) -> Result<Self, Fail> {
        if args.len() < n {
            return Err(Fail::Arity {
                want,
                got: args.len(),
            });
        }
        Ok(Self { args })
    }

    pub(super) fn len(&self) -> usize {
        self.args.len()
    }

    pub(super) fn value(&self, i: usize) -> &'a Value {
        self.args.get(i).unwrap_or(&Value::NoValue)
    }

    pub(super) fn rest(&self, from: usize) -> &'a [Value] {
        self.args.get(from..).unwrap_or_default()
    }

    /// A `string` parameter: Go refuses any other type.
    pub(super) fn string(&self, i: usize) -> Result<String, Fail> {
        match self.value(i) {
            Value::String(s) => Ok(s.clone()),
            other => Err(type_error(i, "string", other)),
        }
    }

    /// A `string` parameter, as the bytes it stands for.
    pub(super) fn bytes(&self, i: usize) -> Result<Vec<u8>, Fail> {
        self.string(i).map(|s| bytes::to_bytes(&s))
    }

    /// An `int` parameter: an integer constant or number.
    pub(super) fn int(&self, i: usize) -> Result<i64, Fail> {
        match self.value(i) {
            Value::Number(n) => n
                .as_i64()
                .filter(|_| {
                    !matches!(n.kind(), gtmpl_ng::NumberKind::Float(_))
                        || n.as_f64().is_some_and(|f| f.fract() == 0.0)
                })
                .ok_or_else(|| type_error(i, "int", self.value(i))),
            other => Err(type_error(i, "int", other)),
        }
    }
}

fn type_error(index: usize, want: &'static str, got: &Value) -> Fail {
    Fail::Type {
        index,
        want,
        got: kind_name(got),
    }
}

/// Go's `reflect.Kind` name for a value, as sprig's `kindOf` says it.
pub(super) fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::NoValue | Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Object(_) | Value::Map(_) => "map",
        Value::Array(_) => "slice",
        Value::Function(_) => "func",
        Value::Number(n) => match n.kind() {
            gtmpl_ng::NumberKind::Float(_) => "float64",
            _ => "int",
        },
    }
}

/// sprig's `empty`: nil, false, 0, and empty strings, lists and maps.
pub(super) fn is_empty(value: &Value) -> bool {
    match value {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Object(m) | Value::Map(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Function(_) => false,
        Value::Number(n) => n
            .as_i64()
            .map(|i| i == 0)
            .or_else(|| n.as_u64().map(|u| u == 0))
            .or_else(|| n.as_f64().map(|f| f == 0.0))
            .unwrap_or(true),
    }
}

/// spf13/cast's `ToFloat64`.
pub(super) fn to_float64(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64))
            .unwrap_or(0.0),
        Value::String(s) => s.trim().parse::<f64>().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// spf13/cast's `ToInt64`: numbers, numeric strings, bools; anything else 0.
pub(super) fn to_int64(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Value::String(s) => parse_go_int(s.trim()).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// `strconv.ParseInt(s, 0, 0)` as cast uses it: `0x`, `0o`, `0b` prefixes and
/// a leading `0` for octal.
fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = digits.replace('_', "");
    let (radix, digits) =
        if let Some(rest) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
            (16, rest.to_string())
        } else if let Some(rest) = digits.strip_prefix("0b").or(digits.strip_prefix("0B")) {
            (2, rest.to_string())
        } else if let Some(rest) = digits.strip_prefix("0o").or(digits.strip_prefix("0O")) {
            (8, rest.to_string())
        } else if digits.len() > 1 && digits.starts_with('0') {
            (8, digits[1..].to_string())
        } else {
            (10, digits)
        };
    let n = i64::from_str_radix(&digits, radix).ok()?;
    Some(if negative { n.checked_neg()? } else { n })
}

/// sprig's `strval`: strings as they are, everything else as `fmt` prints it.
pub(super) fn strval(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn int(n: i64) -> Value {
    Value::Number(Number::signed(n))
}

pub(super) fn float(f: f64) -> Value {
    Value::Number(Number::float(f))
}

pub(super) fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

/// Bytes a function produced, as an engine string.
pub(super) fn from_bytes(b: &[u8]) -> Value {
    Value::String(bytes::to_text(b))
}

pub(super) fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// Go's `%q` of a string.
pub(super) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
