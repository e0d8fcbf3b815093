//! sprig's string functions.

use gtmpl_ng::Value;

use super::Fail;

fn arg<'a>(args: &'a [Value], index: usize, want: &'static str) -> Result<&'a Value, Fail> {
    args.get(index).ok_or(Fail::Arity {
        want,
        got: args.len(),
    })
}

/// `nindent N TEXT`: a newline, then TEXT with every line indented by N spaces.
pub(super) fn nindent(args: &[Value]) -> Result<Value, Fail> {
    let width = arg(args, 0, "2")?.to_string();
    let width: usize = width
        .parse()
        .map_err(|_| Fail::Reason("the first argument must be a number of spaces"))?;
    let text = arg(args, 1, "2")?.to_string();
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
pub(super) fn quote(args: &[Value]) -> Result<Value, Fail> {
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
