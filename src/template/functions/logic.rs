//! Defaults, logic, types, random bytes and regular expressions where gtmpl-ng
//! differs from sprig.

use gtmpl_ng::Value;
use rand::Rng;

use super::Fail;
use super::go::{self, Args, is_empty};

/// `all ARGS...`: whether no argument is empty.
pub(super) fn all(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(args.iter().all(|v| !is_empty(v))))
}

/// `any ARGS...`: whether some argument is not empty.
pub(super) fn any(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(args.iter().any(|v| !is_empty(v))))
}

/// `typeIsLike TYPE VALUE`: `typeIs`, with `*T` matching `T` too.
pub(super) fn type_is_like(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let want = a.string(0)?;
    let got = go_type_name(a.value(1));
    Ok(Value::Bool(want == got || want == format!("*{got}")))
}

/// Go's `%T` of a value as templates see it.
pub(super) fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::NoValue | Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Object(_) | Value::Map(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
        Value::Function(_) => "func",
        Value::Number(n) => match n.kind() {
            gtmpl_ng::NumberKind::Float(_) => "float64",
            _ => "int",
        },
    }
}

/// `randBytes COUNT`: COUNT random bytes, base64-encoded.
pub(super) fn rand_bytes(args: &[Value]) -> Result<Value, Fail> {
    use base64::Engine;
    let a = Args::exactly(args, 1, "1")?;
    let count = gtmpl_ng::helm_functions::bounded_count(a.int(0)?, "bytes", "randBytes")?;
    let mut bytes = vec![0u8; count];
    rand::thread_rng().fill(bytes.as_mut_slice());
    Ok(go::string(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// `default DEFAULT [VALUE]`: DEFAULT when VALUE is absent or empty.
pub(super) fn default(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(match a.rest(1).first() {
        Some(given) if !is_empty(given) => given.clone(),
        _ => a.value(0).clone(),
    })
}

/// `typeOf VALUE`: Go's `%T`.
pub(super) fn type_of(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(go_type_name(a.value(0))))
}

/// `kindOf VALUE`: Go's `reflect.Kind`.
pub(super) fn kind_of(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(go::kind_name(a.value(0))))
}

fn regex_arg(a: &Args<'_>, i: usize) -> Result<regex::Regex, Fail> {
    regex::Regex::new(&a.string(i)?)
        .map_err(|_| Fail::Reason("the regular expression does not parse"))
}

/// `regexReplaceAll REGEX TEXT REPLACEMENT` (`$1` expands; and `must...`).
pub(super) fn regex_replace_all(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let re = regex_arg(&a, 0)?;
    Ok(go::string(
        re.replace_all(&a.string(1)?, a.string(2)?.as_str())
            .into_owned(),
    ))
}

/// `regexReplaceAllLiteral REGEX TEXT REPLACEMENT` (no expansion).
pub(super) fn regex_replace_all_literal(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let re = regex_arg(&a, 0)?;
    let replacement = a.string(2)?;
    Ok(go::string(
        re.replace_all(&a.string(1)?, regex::NoExpand(&replacement))
            .into_owned(),
    ))
}
