//! Encodings, JSON, YAML and hashes, on bytes where Go works on bytes.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gtmpl_ng::{Number, NumberKind, Value};
use sha2::Digest;

use super::Fail;
use super::go::{self, Args};

/// `b64enc TEXT`.
pub(super) fn b64enc(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(STANDARD.encode(a.bytes(0)?)))
}

/// `b64dec TEXT`: the decoded bytes, or, as sprig does, Go's error text as the
/// value when TEXT is not base64.
pub(super) fn b64dec(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    // Go's decoder skips line breaks.
    let input: Vec<u8> = a
        .bytes(0)?
        .into_iter()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    Ok(match STANDARD.decode(&input) {
        Ok(bytes) => go::from_bytes(&bytes),
        Err(error) => go::string(format!(
            "illegal base64 data at input byte {}",
            base64_error_offset(&error, input.len())
        )),
    })
}

fn base64_error_offset(error: &base64::DecodeError, len: usize) -> usize {
    match error {
        base64::DecodeError::InvalidByte(offset, _) => *offset,
        base64::DecodeError::InvalidLastSymbol(offset, _) => *offset,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
            len - len % 4
        }
    }
}

/// `b32enc TEXT`.
pub(super) fn b32enc(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(data_encoding::BASE32.encode(&a.bytes(0)?)))
}

/// `b32dec TEXT`: like `b64dec`, Go's error text as the value on bad input.
pub(super) fn b32dec(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let input: Vec<u8> = a
        .bytes(0)?
        .into_iter()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    Ok(match data_encoding::BASE32.decode(&input) {
        Ok(bytes) => go::from_bytes(&bytes),
        Err(error) => go::string(format!(
            "illegal base32 data at input byte {}",
            error.position
        )),
    })
}

/// `hexdec TEXT`: the bytes the hex digits stand for; Go's error text as the
/// value on bad input.
pub(super) fn hexdec(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let input = a.bytes(0)?;
    Ok(match hex::decode(&input) {
        Ok(bytes) => go::from_bytes(&bytes),
        Err(hex::FromHexError::OddLength) => go::string("encoding/hex: odd length hex string"),
        Err(hex::FromHexError::InvalidHexCharacter { c, .. }) => go::string(format!(
            "encoding/hex: invalid byte: U+{:04X} {c:?}",
            c as u32
        )),
        Err(_) => go::string("encoding/hex: invalid input"),
    })
}

fn digest<D: Digest>(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(hex::encode(D::digest(a.bytes(0)?))))
}

pub(super) fn sha1sum(args: &[Value]) -> Result<Value, Fail> {
    digest::<sha1::Sha1>(args)
}

pub(super) fn sha256sum(args: &[Value]) -> Result<Value, Fail> {
    digest::<sha2::Sha256>(args)
}

pub(super) fn sha512sum(args: &[Value]) -> Result<Value, Fail> {
    digest::<sha2::Sha512>(args)
}

/// `adler32sum TEXT`: the Adler-32 checksum, in decimal.
pub(super) fn adler32sum(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let mut adler = adler2::Adler32::new();
    adler.write_slice(&a.bytes(0)?);
    Ok(go::string(adler.checksum().to_string()))
}

/// A value as Go's `encoding/json` writes it: integral floats without a
/// fraction, map keys sorted.
pub(super) fn to_json_value(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::String(s) => J::String(s.clone()),
        Value::Number(n) => json_number(n),
        Value::Array(items) => J::Array(items.iter().map(to_json_value).collect()),
        Value::Object(map) | Value::Map(map) => J::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect(),
        ),
    }
}

fn json_number(n: &Number) -> serde_json::Value {
    let as_float = || {
        n.as_f64()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    return Some(serde_json::Value::from(f as i64));
                }
                serde_json::Number::from_f64(f).map(serde_json::Value::Number)
            })
            .unwrap_or(serde_json::Value::Null)
    };
    match n.kind() {
        NumberKind::Float(_) => as_float(),
        _ => n
            .as_i64()
            .map(serde_json::Value::from)
            .or_else(|| n.as_u64().map(serde_json::Value::from))
            .unwrap_or_else(as_float),
    }
}

/// A JSON document as Go's `json.Unmarshal` into `interface{}` reads it:
/// every number a float64.
pub(super) fn from_json_value(value: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => go::float(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Value::String(s),
        J::Array(items) => Value::Array(items.into_iter().map(from_json_value).collect()),
        J::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, from_json_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Go's `json.Marshal`: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn escape_html(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn json_text(value: &Value, pretty: bool, html: bool) -> String {
    let json = to_json_value(value);
    let text = if pretty {
        serde_json::to_string_pretty(&json)
    } else {
        serde_json::to_string(&json)
    }
    .unwrap_or_default();
    if html { escape_html(text) } else { text }
}

pub(super) fn to_json(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(json_text(a.value(0), false, true)))
}

pub(super) fn to_pretty_json(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(json_text(a.value(0), true, true)))
}

pub(super) fn to_raw_json(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(json_text(a.value(0), false, false)))
}

/// `fromJson TEXT`: the document, or nothing (ESO's nil) when TEXT is not JSON.
pub(super) fn from_json(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(serde_json::from_str(&a.string(0)?)
        .map(from_json_value)
        .unwrap_or(Value::NoValue))
}

/// `mustFromJson TEXT`: fails when TEXT is not JSON.
pub(super) fn must_from_json(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    serde_json::from_str(&a.string(0)?)
        .map(from_json_value)
        .map_err(|_| Fail::Reason("the text is not valid JSON"))
}

/// `toYaml VALUE`: as ESO writes it (sigs.k8s.io/yaml), without the final newline.
pub(super) fn to_yaml(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let yaml = serde_yaml_ng::to_string(&to_json_value(a.value(0))).unwrap_or_default();
    Ok(go::string(yaml.strip_suffix('\n').unwrap_or(&yaml)))
}

/// `fromYaml TEXT`: the map it holds; on bad input, as ESO does, a map whose
/// `Error` says what was wrong.
pub(super) fn from_yaml(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let text = a.string(0)?;
    let parsed: Result<serde_json::Value, _> = serde_yaml_ng::from_str(&text);
    Ok(match parsed {
        Ok(serde_json::Value::Object(map)) => from_json_value(serde_json::Value::Object(map)),
        Ok(serde_json::Value::Null) => Value::Map(HashMap::new()),
        Ok(_) => error_map(
            "error unmarshaling JSON: json: cannot unmarshal into Go value of type map[string]interface {}",
        ),
        Err(_) => error_map("error converting YAML to JSON: the text is not valid YAML"),
    })
}

fn error_map(message: &str) -> Value {
    Value::Map(HashMap::from([("Error".to_string(), go::string(message))]))
}
