//! Numbers: integer math with spf13/cast's conversions (`add "2" 3` is 5; text that is
//! no number counts as 0), float math, and the sequence functions.

use gtmpl_ng::Value;
use rand::Rng;

use super::Fail;
use super::go::{self, Args, strval, to_int64};

/// `toDecimal VALUE`: VALUE read as an octal number (`"777"` is 511); 0 if it
/// is not one.
pub(super) fn to_decimal(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let text = strval(a.value(0));
    Ok(go::int(parse_octal(&text).unwrap_or(0)))
}

/// `strconv.ParseInt(s, 8, 64)`.
fn parse_octal(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let n = i64::from_str_radix(digits, 8).ok()?;
    if negative { n.checked_neg() } else { Some(n) }
}

/// `randInt MIN MAX`: a random integer in [MIN, MAX).
pub(super) fn rand_int(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let (min, max) = (a.int(0)?, a.int(1)?);
    if max <= min {
        return Err(Fail::Reason("MAX must be greater than MIN"));
    }
    Ok(go::int(rand::thread_rng().gen_range(min..max)))
}

fn fold(args: &[Value], start: i64, op: fn(i64, i64) -> Option<i64>) -> Result<Value, Fail> {
    args.iter()
        .try_fold(start, |acc, v| op(acc, to_int64(v)))
        .map(go::int)
        .ok_or(Fail::Reason("integer overflow"))
}

/// `add ARGS...`.
pub(super) fn add(args: &[Value]) -> Result<Value, Fail> {
    fold(args, 0, i64::checked_add)
}

/// `add1 N`.
pub(super) fn add1(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    fold(&[a.value(0).clone(), go::int(1)], 0, i64::checked_add)
}

/// `mul A ARGS...`.
pub(super) fn mul(args: &[Value]) -> Result<Value, Fail> {
    Args::at_least(args, 1, "at least 1")?;
    fold(args, 1, i64::checked_mul)
}

fn binary(
    args: &[Value],
    op: fn(i64, i64) -> Option<i64>,
    zero: &'static str,
) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    op(to_int64(a.value(0)), to_int64(a.value(1)))
        .map(go::int)
        .ok_or(Fail::Reason(zero))
}

/// `sub A B`.
pub(super) fn sub(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_sub, "integer overflow")
}

/// `div A B`.
pub(super) fn div(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_div, "integer divide by zero")
}

/// `mod A B`.
pub(super) fn modulo(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_rem, "integer divide by zero")
}

/// `max A ARGS...` (and `biggest`).
pub(super) fn max(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(go::int(a.rest(0).iter().map(to_int64).max().unwrap_or(0)))
}

/// `min A ARGS...`.
pub(super) fn min(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(go::int(a.rest(0).iter().map(to_int64).min().unwrap_or(0)))
}

/// `seq ...`: Unix `seq`, as sprig writes it.
pub(super) fn seq(args: &[Value]) -> Result<Value, Fail> {
    let params: Vec<i64> = args.iter().map(to_int64).collect();
    let run = |start: i64, end: i64, step: i64| -> Result<String, Fail> {
        let mut out = Vec::new();
        let mut i = start;
        let limit = gtmpl_ng::Limits::DEFAULT.iterations.unwrap_or(10_000);
        while (step > 0 && i < end) || (step < 0 && i > end) {
            if out.len() >= limit {
                return Err(Fail::Reason("seq asks for more numbers than allowed"));
            }
            out.push(i.to_string());
            i = i
                .checked_add(step)
                .ok_or(Fail::Reason("integer overflow"))?;
        }
        Ok(out.join(" "))
    };
    let text = match params.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            run(1, end + inc, inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            run(*start, end + step, step)?
        }
        [start, step, end] => {
            if end < start && *step > 0 {
                String::new()
            } else {
                let inc = if end < start { -1 } else { 1 };
                run(*start, end + inc, *step)?
            }
        }
        _ => String::new(),
    };
    Ok(go::string(text))
}

fn float_fold(args: &[Value], first: f64, op: fn(f64, f64) -> f64) -> Value {
    let result = args.iter().map(go::to_float64).fold(first, op);
    // shopspring/decimal keeps decimal digits exact; 15 significant digits
    // hide the binary noise f64 adds (`1.5 + 2.2`).
    let rounded: f64 = format!("{result:.15e}").parse().unwrap_or(result);
    go::float(rounded)
}

/// `addf ARGS...`.
pub(super) fn addf(args: &[Value]) -> Result<Value, Fail> {
    Ok(float_fold(args, 0.0, |a, b| a + b))
}

/// `add1f N`.
pub(super) fn add1f(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(float_fold(
        &[go::float(1.0)],
        go::to_float64(a.value(0)),
        |a, b| a + b,
    ))
}

fn float_chain(args: &[Value], op: fn(f64, f64) -> f64) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(float_fold(a.rest(1), go::to_float64(a.value(0)), op))
}

/// `subf A ARGS...`.
pub(super) fn subf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a - b)
}

/// `mulf A ARGS...`.
pub(super) fn mulf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a * b)
}

/// `divf A ARGS...`.
pub(super) fn divf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a / b)
}

/// sprig's `untilStep`, bounded as `{{ range }}` is.
fn until_step_list(start: i64, stop: i64, step: i64) -> Result<Value, Fail> {
    let limit = gtmpl_ng::Limits::DEFAULT.iterations.unwrap_or(10_000);
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && stop < start && i > stop) {
        if out.len() >= limit {
            return Err(Fail::Reason("asks for more elements than allowed"));
        }
        out.push(go::int(i));
        i = i
            .checked_add(step)
            .ok_or(Fail::Reason("integer overflow"))?;
    }
    Ok(Value::Array(out))
}

/// `until N`: 0 up (or down) to N, N excluded.
pub(super) fn until(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let count = a.int(0)?;
    until_step_list(0, count, if count < 0 { -1 } else { 1 })
}

/// `untilStep START STOP STEP`.
pub(super) fn until_step(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    until_step_list(a.int(0)?, a.int(1)?, a.int(2)?)
}
