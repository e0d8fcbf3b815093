//! `dataFrom[].rewrite`: renames the keys `extract` or `find` produced, in order.

use std::collections::BTreeMap;

use regex::Regex;

use super::SyncError;
use super::admission::shown;
use crate::SecretValue;
use crate::api::{ConversionStrategy, Rewrite};
use crate::template::{Budget, Context, Template};

/// Applies `rewrites` to every key of `map`. `field` is the `dataFrom[i]` path.
/// Transform templates spend from `budget`.
/// Two keys rewritten to one, or a key rewritten to nothing, is an error (ESO
/// keeps one of them, or drops the key, silently).
pub(crate) fn rewrite_keys(
    map: BTreeMap<String, SecretValue>,
    rewrites: &[Rewrite],
    field: &str,
    budget: &mut Budget,
) -> Result<BTreeMap<String, SecretValue>, SyncError> {
    rewrites
        .iter()
        .enumerate()
        .try_fold(map, |map, (i, rewrite)| {
            let field = format!("{field}.rewrite[{i}]");
            if let Some(regexp) = &rewrite.regexp {
                let source = Regex::new(&regexp.source).map_err(|e| SyncError::Regexp {
                    field: format!("{field}.regexp.source"),
                    message: e.to_string(),
                })?;
                rename_all(map, &field, |key| {
                    Ok(source.replace_all(key, regexp.target.as_str()).into_owned())
                })
            } else if let Some(transform) = &rewrite.transform {
                let field = format!("{field}.transform.template");
                let template_error = |error| SyncError::Template {
                    field: field.clone(),
                    error,
                };
                let mut template = Template::parse(&transform.template).map_err(template_error)?;
                rename_all(map, &field, |key| {
                    let mut context = Context::new();
                    context.insert("value", SecretValue::from(key));
                    let rendered = template.render(&context, budget).map_err(template_error)?;
                    Ok(String::from_utf8_lossy(rendered.expose()).into_owned())
                })
            } else {
                Ok(map)
            }
        })
}

/// Renames every key of `map` with `rename`, refusing empty and colliding results.
fn rename_all(
    map: BTreeMap<String, SecretValue>,
    field: &str,
    mut rename: impl FnMut(&str) -> Result<String, SyncError>,
) -> Result<BTreeMap<String, SecretValue>, SyncError> {
    let mut out = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in map {
        let renamed = rename(&key)?;
        if renamed.is_empty() {
            return Err(SyncError::EmptyKey {
                field: field.to_string(),
                from: shown(&key),
            });
        }
        if let Some(first) = origin.get(&renamed) {
            return Err(SyncError::KeyCollision {
                field: field.to_string(),
                first: shown(first),
                second: shown(&key),
                key: shown(&renamed),
                hint: "",
            });
        }
        origin.insert(renamed.clone(), key);
        out.insert(renamed, value);
    }
    Ok(out)
}

/// ESO's conversion of remote names (`find`) and JSON field names
/// (`extract`) into Secret keys: every character a key may not hold becomes
/// `_` (`Default`: `app/db` -> `app_db`) or `_U<code point in hex, at least
/// four digits>_` (`Unicode`: `app/db` -> `app_U002f_db`).
pub(crate) fn convert_key(key: &str, strategy: Option<ConversionStrategy>) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
            out.push(c);
        } else if strategy == Some(ConversionStrategy::Unicode) {
            out.push_str(&format!("_U{:04x}_", u32::from(c)));
        } else {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RewriteRegexp, RewriteTransform};

    fn keys(map: &BTreeMap<String, SecretValue>) -> Vec<&str> {
        map.keys().map(String::as_str).collect()
    }

    #[test]
    fn regexp_then_transform_in_order() {
        let map: BTreeMap<_, _> = ["app/db/user", "app/db/password"]
            .into_iter()
            .map(|k| (k.to_string(), SecretValue::from("v")))
            .collect();
        let rewrites = vec![
            Rewrite {
                regexp: Some(RewriteRegexp {
                    source: "^app/(\\w+)/".into(),
                    target: "${1}_".into(),
                }),
                transform: None,
            },
            Rewrite {
                regexp: None,
                transform: Some(RewriteTransform {
                    template: "{{ .value | upper }}".into(),
                }),
            },
        ];
        let out =
            rewrite_keys(map, &rewrites, "spec.dataFrom[0]", &mut Budget::unlimited()).unwrap();
        assert_eq!(keys(&out), ["DB_PASSWORD", "DB_USER"]);
    }

    #[test]
    fn bad_regexp_names_the_field() {
        let rewrites = vec![Rewrite {
            regexp: Some(RewriteRegexp {
                source: "(".into(),
                target: "x".into(),
            }),
            transform: None,
        }];
        let error = rewrite_keys(
            BTreeMap::new(),
            &rewrites,
            "spec.dataFrom[2]",
            &mut Budget::unlimited(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("spec.dataFrom[2].rewrite[0].regexp.source: invalid regexp"),
            "{error}"
        );
    }

    #[test]
    fn rewrites_to_one_key_or_to_nothing_are_errors() {
        let map: BTreeMap<_, _> = ["app/db", "other/db"]
            .into_iter()
            .map(|k| (k.to_string(), SecretValue::from("v")))
            .collect();
        let regexp = |source: &str, target: &str| Rewrite {
            regexp: Some(RewriteRegexp {
                source: source.into(),
                target: target.into(),
            }),
            transform: None,
        };
        let error = rewrite_keys(
            map.clone(),
            &[regexp("^[a-z]+/", "")],
            "spec.dataFrom[0]",
            &mut Budget::unlimited(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "spec.dataFrom[0].rewrite[0]: \"app/db\" and \"other/db\" both become Secret key \"db\""
        );
        let error = rewrite_keys(
            map,
            &[regexp(".*", "")],
            "spec.dataFrom[1]",
            &mut Budget::unlimited(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "spec.dataFrom[1].rewrite[0]: key \"app/db\" becomes an empty key"
        );
    }

    #[test]
    fn conversion_replaces_invalid_characters() {
        assert_eq!(convert_key("app/db password", None), "app_db_password");
        assert_eq!(convert_key("ok-key.v_1", None), "ok-key.v_1");
        let unicode = Some(ConversionStrategy::Unicode);
        assert_eq!(
            convert_key("app/db password", unicode),
            "app_U002f_db_U0020_password"
        );
        assert_eq!(convert_key("clé🔑", unicode), "cl_U00e9__U1f511_");
    }
}
