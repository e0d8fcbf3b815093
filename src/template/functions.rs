//! Template functions ESO's v2 engine has and gtmpl-ng's Helm set lacks or gets
//! different from sprig. Everything else comes from gtmpl-ng.

use gtmpl_ng::{Func, FuncError, Value};

/// Added to (or replacing) gtmpl-ng's Helm functions.
pub(super) const EXTRA_FUNCTIONS: &[(&str, Func)] =
    &[("nindent", nindent as Func), ("quote", quote as Func)];

fn arg<'a>(
    args: &'a [Value],
    index: usize,
    function: &str,
    count: usize,
) -> Result<&'a Value, FuncError> {
    args.get(index)
        .ok_or_else(|| FuncError::ExactlyXArgs(function.to_string(), count))
}

/// `nindent N TEXT`: a newline, then TEXT with every line indented by N spaces.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let width = arg(args, 0, "nindent", 2)?.to_string();
    let width: usize = width.parse().map_err(|_| {
        FuncError::Generic("nindent: the first argument must be a number of spaces".into())
    })?;
    let text = arg(args, 1, "nindent", 2)?.to_string();
    let width = gtmpl_ng::helm_functions::bounded_count(width as i64, "spaces", "nindent")?;
    let pad = " ".repeat(width);
    let mut out = String::with_capacity(text.len() + 1);
    out.push('\n');
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&pad);
        out.push_str(line);
    }
    Ok(Value::from(out))
}

/// `quote ARGS...`: each argument as a Go double-quoted string (`%q`), so quotes,
/// backslashes and control characters are escaped; joined by spaces, as sprig does.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    if args.is_empty() {
        return Err(FuncError::AtLeastXArgs("quote".into(), 1));
    }
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| go_quote(&v.to_string()))
        .collect();
    Ok(Value::from(quoted.join(" ")))
}

fn go_quote(text: &str) -> String {
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
