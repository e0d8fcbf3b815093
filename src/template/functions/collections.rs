//! Lists and dicts where gtmpl-ng differs from sprig.

use std::collections::HashMap;

use gtmpl_ng::Value;

use super::Fail;
use super::go::{self, Args, is_empty, strval};

/// `tuple ARGS...`: a list (sprig's other name for `list`).
pub(super) fn tuple(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Array(args.to_vec()))
}

/// `chunk SIZE LIST`: LIST in pieces of SIZE items.
pub(super) fn chunk(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let size = usize::try_from(a.int(0)?).unwrap_or(0);
    let Value::Array(items) = a.value(1) else {
        return Err(Fail::Reason("the second argument must be a list"));
    };
    if size == 0 {
        return Err(Fail::Reason("the chunk size must be at least 1"));
    }
    Ok(Value::Array(
        items
            .chunks(size)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

/// `compact LIST` (and `mustCompact`): the items that are not empty.
pub(super) fn compact(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let Value::Array(items) = a.value(0) else {
        return Err(Fail::Reason("the argument must be a list"));
    };
    Ok(Value::Array(
        items.iter().filter(|v| !is_empty(v)).cloned().collect(),
    ))
}

/// `has NEEDLE LIST` (and `mustHas`).
pub(super) fn has(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(Value::Bool(match a.value(1) {
        Value::Array(items) => items.iter().any(|v| v == a.value(0)),
        Value::Nil | Value::NoValue => false,
        _ => return Err(Fail::Reason("the second argument must be a list")),
    }))
}

fn as_map(value: &Value) -> Option<&HashMap<String, Value>> {
    match value {
        Value::Map(m) | Value::Object(m) => Some(m),
        _ => None,
    }
}

/// `pluck KEY DICTS...`: KEY's value in every dict that has it.
pub(super) fn pluck(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    let key = a.string(0)?;
    Ok(Value::Array(
        a.rest(1)
            .iter()
            .filter_map(|d| as_map(d).and_then(|m| m.get(&key)).cloned())
            .collect(),
    ))
}

fn deep_merge(dst: &mut HashMap<String, Value>, src: &HashMap<String, Value>, overwrite: bool) {
    for (key, value) in src {
        match (dst.get_mut(key), as_map(value)) {
            (Some(Value::Map(d) | Value::Object(d)), Some(s)) => deep_merge(d, s, overwrite),
            (Some(existing), _) => {
                if overwrite && !is_empty(value) || is_empty(existing) && !overwrite {
                    *existing = value.clone();
                }
            }
            (None, _) => {
                dst.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_with(args: &[Value], overwrite: bool) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    let mut dst = as_map(a.value(0))
        .cloned()
        .ok_or(Fail::Reason("every argument must be a dict"))?;
    for src in a.rest(1) {
        let src = as_map(src).ok_or(Fail::Reason("every argument must be a dict"))?;
        deep_merge(&mut dst, src, overwrite);
    }
    Ok(Value::Map(dst))
}

/// `merge DST SRCS...`: DST's keys win (mergo's default).
pub(super) fn merge(args: &[Value]) -> Result<Value, Fail> {
    merge_with(args, false)
}

/// `mergeOverwrite DST SRCS...`: later keys win.
pub(super) fn merge_overwrite(args: &[Value]) -> Result<Value, Fail> {
    merge_with(args, true)
}

/// `dig KEYS... DEFAULT DICT`: the value at the path, or DEFAULT.
pub(super) fn dig(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 3, "at least 3")?;
    let n = a.len();
    let default = a.value(n - 2);
    let mut at = a.value(n - 1);
    for key in &args[..n - 2] {
        let key = strval(key);
        match as_map(at).and_then(|m| m.get(&key)) {
            Some(next) => at = next,
            None => return Ok(default.clone()),
        }
    }
    Ok(at.clone())
}

/// `len VALUE`: Go counts a string's bytes.
pub(super) fn len(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    match a.value(0) {
        Value::String(_) => Ok(go::int(a.bytes(0)?.len() as i64)),
        Value::Array(items) => Ok(go::int(items.len() as i64)),
        Value::Map(m) | Value::Object(m) => Ok(go::int(m.len() as i64)),
        _ => Err(Fail::Reason("len of a value that has no length")),
    }
}

/// `first LIST` (and `mustFirst`): nil for an empty list.
pub(super) fn first(args: &[Value]) -> Result<Value, Fail> {
    end_of(args, |items| items.first())
}

/// `last LIST` (and `mustLast`): nil for an empty list.
pub(super) fn last(args: &[Value]) -> Result<Value, Fail> {
    end_of(args, |items| items.last())
}

fn end_of(args: &[Value], pick: fn(&[Value]) -> Option<&Value>) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    match a.value(0) {
        Value::Array(items) => Ok(pick(items).cloned().unwrap_or(Value::NoValue)),
        Value::Nil | Value::NoValue => Ok(Value::NoValue),
        _ => Err(Fail::Reason("the argument must be a list")),
    }
}
