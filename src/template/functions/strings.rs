//! sprig's string functions that gtmpl-ng lacks or renders differently.

use gtmpl_ng::Value;

use super::Fail;
use super::go::{self, Args, strval};

/// `nindent N TEXT`: a newline, then TEXT with every line indented by N spaces.
pub(super) fn nindent(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let width = a.int(0)?;
    let text = a.string(1)?;
    let width = gtmpl_ng::helm_functions::bounded_count(width, "spaces", "nindent")?;
    let pad = " ".repeat(width);
    Ok(go::string(format!(
        "\n{pad}{}",
        text.replace('\n', &format!("\n{pad}"))
    )))
}

/// `quote ARGS...`: each non-nil argument as Go's `%q`, joined by spaces.
pub(super) fn quote(args: &[Value]) -> Result<Value, Fail> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| go::go_quote(&strval(v)))
        .collect();
    Ok(go::string(quoted.join(" ")))
}

/// sprig's `strslice`: a list's non-nil items as strings; a scalar as a list of one.
pub(super) fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
            .map(strval)
            .collect(),
        Value::Nil | Value::NoValue => Vec::new(),
        other => vec![strval(other)],
    }
}

/// `join SEP LIST`.
pub(super) fn join(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let sep = a.string(0)?;
    Ok(go::string(string_list(a.value(1)).join(&sep)))
}

/// Go's `strings.Split`: an empty separator splits after every character.
fn go_split(text: &str, sep: &str, limit: Option<usize>) -> Vec<String> {
    if limit == Some(0) {
        return Vec::new();
    }
    if sep.is_empty() {
        let chars: Vec<String> = text.chars().map(String::from).collect();
        return match limit {
            Some(n) if n < chars.len() => {
                let mut head: Vec<String> = chars[..n - 1].to_vec();
                head.push(chars[n - 1..].concat());
                head
            }
            _ => chars,
        };
    }
    match limit {
        Some(n) => text.splitn(n, sep).map(String::from).collect(),
        None => text.split(sep).map(String::from).collect(),
    }
}

fn indexed_map(parts: Vec<String>) -> Value {
    Value::Map(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::String(p)))
            .collect(),
    )
}

/// `split SEP TEXT`: a map `_0`, `_1`, ... of the parts.
pub(super) fn split(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(indexed_map(go_split(&a.string(1)?, &a.string(0)?, None)))
}

/// `splitn SEP N TEXT`.
pub(super) fn splitn(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let n = a.int(1)?;
    let limit = usize::try_from(n).ok();
    Ok(indexed_map(go_split(&a.string(2)?, &a.string(0)?, limit)))
}

/// `splitList SEP TEXT`: the parts as a list.
pub(super) fn split_list(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(go::strings(go_split(&a.string(1)?, &a.string(0)?, None)))
}

/// `sortAlpha LIST`: the items as strings, sorted.
pub(super) fn sort_alpha(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    match a.value(0) {
        Value::Array(_) => {
            let mut items = string_list(a.value(0));
            items.sort();
            Ok(go::strings(items))
        }
        // sprig gives anything that is not a list back as a one-item list.
        other => Ok(go::strings([strval(other)])),
    }
}

/// `trimall CUTSET TEXT` (and `trimAll`): Go's `strings.Trim`.
pub(super) fn trim_all(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let cutset: Vec<char> = a.string(0)?.chars().collect();
    Ok(go::string(a.string(1)?.trim_matches(cutset.as_slice())))
}

/// `wrap WIDTH TEXT`: goutils' `Wrap`, lines broken at spaces with `\n`.
pub(super) fn wrap(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(go::string(wrap_custom(
        &a.string(1)?,
        a.int(0)?,
        "\n",
        false,
    )))
}

/// `wrapWith WIDTH SEP TEXT`: `WrapCustom` with long words broken too.
pub(super) fn wrap_with(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    Ok(go::string(wrap_custom(
        &a.string(2)?,
        a.int(0)?,
        &a.string(1)?,
        true,
    )))
}

/// goutils' `WrapCustom`, on bytes as Go indexes them.
fn wrap_custom(text: &str, width: i64, newline: &str, wrap_long: bool) -> String {
    let width = usize::try_from(width.max(1)).unwrap_or(1);
    let newline = if newline.is_empty() { "\n" } else { newline };
    let bytes = text.as_bytes();
    let piece = |from: usize, to: usize| {
        String::from_utf8_lossy(bytes.get(from..to.min(bytes.len())).unwrap_or_default())
    };
    let mut out = String::with_capacity(text.len() + 16);
    let mut offset = 0;
    while bytes.len().saturating_sub(offset) > width {
        if bytes.get(offset) == Some(&b' ') {
            offset += 1;
            continue;
        }
        let end = (width + offset + 1).min(bytes.len());
        let window = bytes.get(offset..end).unwrap_or_default();
        if let Some(space) = window.iter().rposition(|b| *b == b' ') {
            out.push_str(&piece(offset, offset + space));
            out.push_str(newline);
            offset += space + 1;
        } else if wrap_long {
            out.push_str(&piece(offset, offset + width));
            out.push_str(newline);
            offset += width;
        } else {
            let end = offset + width;
            match bytes
                .get(end..)
                .and_then(|rest| rest.iter().position(|b| *b == b' '))
            {
                Some(index) => {
                    out.push_str(&piece(offset, end + index));
                    out.push_str(newline);
                    offset = end + index + 1;
                }
                None => {
                    out.push_str(&piece(offset, bytes.len()));
                    offset = bytes.len();
                }
            }
        }
    }
    out.push_str(&piece(offset, bytes.len()));
    out
}

/// `regexQuoteMeta TEXT`: Go's `regexp.QuoteMeta`.
pub(super) fn regex_quote_meta(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let text = a.string(0)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(go::string(out))
}

/// `hello`: sprig's greeting.
pub(super) fn hello(args: &[Value]) -> Result<Value, Fail> {
    Args::exactly(args, 0, "0")?;
    Ok(go::string("Hello!"))
}

/// Go's `strings.Title`: the first letter of every word upper-cased.
fn title_case(text: &str, upper: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    for c in text.chars() {
        if at_start && c.is_alphabetic() {
            if upper {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
        } else {
            out.push(c);
        }
        at_start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// `title TEXT`.
pub(super) fn title(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(title_case(&a.string(0)?, true)))
}

/// `untitle TEXT`: goutils' `Uncapitalize`, every word's first letter lowered.
pub(super) fn untitle(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(title_case(&a.string(0)?, false)))
}

/// `camelcase TEXT`: xstrings' `ToPascalCase` (`http_server` is `HttpServer`).
pub(super) fn camelcase(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let text = a.string(0)?;
    let out: String = text
        .split(['_', '-', ' ', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    Ok(go::string(out))
}

/// goutils' `AbbreviateFull`, on bytes as Go indexes them.
fn abbreviate(text: &str, offset: usize, width: usize) -> String {
    let len = text.len();
    let piece = |from: usize, to: usize| {
        String::from_utf8_lossy(text.as_bytes().get(from..to.min(len)).unwrap_or_default())
            .into_owned()
    };
    if text.is_empty() || width < 4 || len <= width {
        return text.to_string();
    }
    let mut offset = offset.min(len);
    if len - offset < width - 3 {
        offset = len - (width - 3);
    }
    if offset <= 4 {
        return piece(0, width - 3) + "...";
    }
    if width < 7 {
        return text.to_string();
    }
    if offset + width - 3 < len {
        return format!("...{}", abbreviate(&piece(offset, len), 0, width - 3));
    }
    format!("...{}", piece(len - (width - 3), len))
}

/// `abbrev WIDTH TEXT`.
pub(super) fn abbrev(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let width = usize::try_from(a.int(0)?).unwrap_or(0);
    Ok(go::string(abbreviate(&a.string(1)?, 0, width)))
}

/// `abbrevboth LEFT RIGHT TEXT`.
pub(super) fn abbrevboth(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let (left, right) = (a.int(0)?, a.int(1)?);
    let text = a.string(2)?;
    if right < 4 || left > 0 && right < 7 {
        return Ok(go::string(text));
    }
    let (left, right) = (
        usize::try_from(left).unwrap_or(0),
        usize::try_from(right).unwrap_or(0),
    );
    Ok(go::string(abbreviate(&text, left, right)))
}

/// Bytes `from..to` of `text`, as Go slices a string; `None` where Go panics.
fn byte_slice(text: &str, from: usize, to: usize) -> Option<String> {
    text.as_bytes()
        .get(from..to)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `substr START END TEXT`: bytes START..END; a negative START is 0, a
/// negative or too large END is the end.
pub(super) fn substr(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let (start, end, text) = (a.int(0)?, a.int(1)?, a.string(2)?);
    let len = text.len();
    let out = if start < 0 {
        usize::try_from(end)
            .ok()
            .and_then(|end| byte_slice(&text, 0, end))
    } else {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        match usize::try_from(end) {
            Ok(end) if end <= len => byte_slice(&text, start, end),
            _ => byte_slice(&text, start, len),
        }
    };
    out.map(go::string)
        .ok_or(Fail::Reason("slice bounds out of range"))
}

/// `trunc N TEXT`: the first N bytes, or the last -N.
pub(super) fn trunc(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let (count, text) = (a.int(0)?, a.string(1)?);
    let len = i64::try_from(text.len()).unwrap_or(i64::MAX);
    let out = if count < 0 && len + count > 0 {
        byte_slice(&text, (len + count) as usize, text.len())
    } else if count >= 0 && len > count {
        byte_slice(&text, 0, count as usize)
    } else {
        Some(text.clone())
    };
    Ok(go::string(out.unwrap_or(text)))
}
