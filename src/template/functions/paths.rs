//! Paths (Go's `path/filepath` on Linux is `path`) and URLs, as Go's `net/url`
//! reads and writes them.

use gtmpl_ng::Value;

use super::Fail;
use super::go::{self, Args, strval};

fn path_arg(args: &[Value]) -> Result<String, Fail> {
    Args::exactly(args, 1, "1")?.string(0)
}

/// Go's `path.Clean`.
pub(super) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

pub(super) fn os_base(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let trimmed = path.trim_end_matches('/');
    Ok(go::string(if path.is_empty() {
        "."
    } else if trimmed.is_empty() {
        "/"
    } else {
        trimmed.rsplit('/').next().unwrap_or(trimmed)
    }))
}

pub(super) fn os_clean(args: &[Value]) -> Result<Value, Fail> {
    Ok(go::string(clean_path(&path_arg(args)?)))
}

pub(super) fn os_dir(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    };
    Ok(go::string(clean_path(dir)))
}

pub(super) fn os_ext(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let last = path.rsplit('/').next().unwrap_or_default();
    Ok(go::string(last.rfind('.').map_or("", |i| &last[i..])))
}

pub(super) fn os_is_abs(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(path_arg(args)?.starts_with('/')))
}

/// `urlParse URL`: its parts, as sprig's map (`scheme`, `host`, `hostname`,
/// `path`, `query`, `opaque`, `fragment`, `userinfo`).
pub(super) fn url_parse(args: &[Value]) -> Result<Value, Fail> {
    let text = Args::exactly(args, 1, "1")?.string(0)?;
    let parts: [(&str, String); 8] = match url::Url::parse(&text) {
        Ok(url) => {
            let userinfo = match (url.username(), url.password()) {
                ("", None) => String::new(),
                (user, None) => user.to_string(),
                (user, Some(password)) => format!("{user}:{password}"),
            };
            let hostname = url.host_str().unwrap_or_default().to_string();
            let host = match url.port() {
                Some(port) => format!("{hostname}:{port}"),
                None => hostname.clone(),
            };
            let (path, opaque) = if url.cannot_be_a_base() {
                (String::new(), url.path().to_string())
            } else {
                (percent_decode(url.path()), String::new())
            };
            [
                ("scheme", url.scheme().to_string()),
                ("host", host),
                ("hostname", hostname),
                ("path", path),
                ("query", url.query().unwrap_or_default().to_string()),
                ("opaque", opaque),
                (
                    "fragment",
                    percent_decode(url.fragment().unwrap_or_default()),
                ),
                ("userinfo", userinfo),
            ]
        }
        // A reference without a scheme: Go reads it as a path.
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let (rest, fragment) = text.split_once('#').unwrap_or((&text, ""));
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            [
                ("scheme", String::new()),
                ("host", String::new()),
                ("hostname", String::new()),
                ("path", percent_decode(path)),
                ("query", query.to_string()),
                ("opaque", String::new()),
                ("fragment", percent_decode(fragment)),
                ("userinfo", String::new()),
            ]
        }
        Err(_) => return Err(Fail::Reason("the text is not a valid URL")),
    };
    Ok(Value::Map(
        parts
            .into_iter()
            .map(|(k, v)| (k.to_string(), go::string(v)))
            .collect(),
    ))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `urlJoin MAP`: the URL made of the parts `urlParse` gives.
pub(super) fn url_join(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let (Value::Map(parts) | Value::Object(parts)) = a.value(0) else {
        return Err(Fail::Reason("the argument must be a map of URL parts"));
    };
    let part = |name: &str| parts.get(name).map(strval).unwrap_or_default();
    let (scheme, host, path) = (part("scheme"), part("host"), part("path"));
    let (userinfo, opaque) = (part("userinfo"), part("opaque"));
    let (query, fragment) = (part("query"), part("fragment"));
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || !userinfo.is_empty() {
            if !host.is_empty() || !path.is_empty() || !userinfo.is_empty() {
                out.push_str("//");
            }
            if !userinfo.is_empty() {
                out.push_str(&userinfo);
                out.push('@');
            }
            out.push_str(&host);
        }
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&path);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&fragment);
    }
    Ok(go::string(out))
}

/// `clean PATH`: Go's `path.Clean`.
pub(super) fn clean(args: &[Value]) -> Result<Value, Fail> {
    Ok(go::string(clean_path(&path_arg(args)?)))
}
