//! `target.template`: the Secret's type, labels, annotations and data rendered
//! from the fetched values, with ESO's precedence: `template.data` over
//! `templateFrom` over (with `mergePolicy: Merge`) the fetched values.

use std::collections::{BTreeMap, BTreeSet};

use super::SyncError;
use super::decoding::decode;
use crate::SecretValue;
use crate::api::{
    DecodingStrategy, ExternalSecretSpec, ExternalSecretTemplate, SECRET_KEY_PATTERN,
    TemplateMergePolicy, TemplateScope, TemplateTarget,
};
use crate::template::{Budget, Context, Template, TemplateError};

/// ConfigMaps and Secrets of the ExternalSecret's namespace that `templateFrom`
/// may read, by name. Drivers load those [`template_source_names`] lists.
#[derive(Default)]
pub struct TemplateSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, SecretValue>>,
}

impl TemplateSources {
    /// One key of a ConfigMap or Secret, or what is missing.
    fn text(&self, kind: &str, name: &str, key: &str) -> Result<String, String> {
        let absent = || "not found in the ExternalSecret's namespace".to_string();
        let text = if kind == "ConfigMap" {
            self.config_maps
                .get(name)
                .ok_or_else(absent)?
                .get(key)
                .cloned()
        } else {
            let value = self.secrets.get(name).ok_or_else(absent)?.get(key);
            value.map(|v| String::from_utf8_lossy(v.expose()).into_owned())
        };
        text.ok_or_else(|| format!("has no key {key:?}"))
    }
}

/// Names of the ConfigMaps and Secrets `templateFrom` reads.
pub fn template_source_names(spec: &ExternalSecretSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let template_from = spec.target.template.iter().flat_map(|t| &t.template_from);
    for from in template_from {
        config_maps.extend(from.config_map.iter().map(|r| r.name.clone()));
        secrets.extend(from.secret.iter().map(|r| r.name.clone()));
    }
    (config_maps, secrets)
}

/// The parts of a Secret a template decides.
pub(crate) struct Rendered {
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
}

const DEFAULT_TYPE: &str = "Opaque";
const FIELD: &str = "spec.target.template";

/// One template to render and where its output goes.
struct Job<'a> {
    target: TemplateTarget,
    scope: TemplateScope,
    /// The Secret key, label or annotation (`Values` scope).
    key: &'a str,
    text: &'a str,
    /// `templateFrom[].valuesDecodingStrategy`.
    decoding: DecodingStrategy,
    field: &'a str,
    /// The template text came out of a Secret: errors then give its position
    /// but not its text.
    from_secret: bool,
}

/// Renders every template of `template`, all within one `budget`.
pub(crate) fn apply_template(
    template: &ExternalSecretTemplate,
    fetched: BTreeMap<String, SecretValue>,
    sources: &TemplateSources,
    budget: &mut Budget,
) -> Result<Rendered, SyncError> {
    let mut context = Context::new();
    for (key, value) in &fetched {
        context.insert(key.clone(), value.clone());
    }
    let mut out = Rendered {
        type_: template
            .type_
            .clone()
            .unwrap_or_else(|| DEFAULT_TYPE.into()),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        data: match template.merge_policy {
            TemplateMergePolicy::Merge => fetched.clone(),
            TemplateMergePolicy::Replace => BTreeMap::new(),
        },
    };

    for (i, from) in template.template_from.iter().enumerate() {
        let field = format!("{FIELD}.templateFrom[{i}]");
        let sources_of_kind = [
            ("configMap", "ConfigMap", from.config_map.as_ref()),
            ("secret", "Secret", from.secret.as_ref()),
        ];
        for (name, kind, template_ref) in sources_of_kind {
            let Some(template_ref) = template_ref else {
                continue;
            };
            let missing = |problem: String| SyncError::TemplateSource {
                field: format!("{field}.{name}"),
                kind,
                name: template_ref.name.clone(),
                problem,
            };
            for item in &template_ref.items {
                let text = sources
                    .text(kind, &template_ref.name, &item.key)
                    .map_err(missing)?;
                let field = format!("{field}.{name}.items[{}]", item.key);
                let job = Job {
                    target: from.target,
                    scope: item.template_as,
                    key: &item.key,
                    text: &text,
                    decoding: from.values_decoding_strategy.unwrap_or_default(),
                    field: &field,
                    from_secret: kind == "Secret",
                };
                render_into(&mut out, &job, &context, budget)?;
            }
        }
        if let Some(literal) = &from.literal {
            let field = format!("{field}.literal");
            let job = Job {
                target: from.target,
                scope: TemplateScope::KeysAndValues,
                key: "",
                text: literal,
                decoding: from.values_decoding_strategy.unwrap_or_default(),
                field: &field,
                from_secret: false,
            };
            render_into(&mut out, &job, &context, budget)?;
        }
    }

    let maps = [
        (TemplateTarget::Data, "data", &template.data),
        (
            TemplateTarget::Labels,
            "metadata.labels",
            &template.metadata.labels,
        ),
        (
            TemplateTarget::Annotations,
            "metadata.annotations",
            &template.metadata.annotations,
        ),
    ];
    for (target, name, map) in maps {
        for (key, text) in map {
            let field = format!("{FIELD}.{name}.{key}");
            let job = Job {
                target,
                scope: TemplateScope::Values,
                key,
                text,
                decoding: DecodingStrategy::None,
                field: &field,
                from_secret: false,
            };
            render_into(&mut out, &job, &context, budget)?;
        }
    }

    if template.data.is_empty() && template.template_from.is_empty() {
        out.data = fetched;
    }
    Ok(out)
}

/// A YAML scalar as the text ESO makes of it: ESO reads a rendered map with
/// Kubernetes' YAML reader into `map[string]string`, which turns number and
/// boolean keys into their text (`1: a` is key "1") and does the same for
/// values, and reads a null value as "". Lists and maps are not text.
fn scalar_text(value: &serde_yaml_ng::Value, as_value: bool) -> Option<String> {
    match value {
        serde_yaml_ng::Value::String(text) => Some(text.clone()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Some(
            n.as_i64()
                .map(|i| i.to_string())
                .or_else(|| n.as_u64().map(|u| u.to_string()))
                .unwrap_or_else(|| n.to_string()),
        ),
        serde_yaml_ng::Value::Null if as_value => Some(String::new()),
        _ => None,
    }
}

/// Renders one template and stores the result: under `job.key` (`Values`), or as
/// the YAML map of keys to values it produced (`KeysAndValues`).
fn render_into(
    out: &mut Rendered,
    job: &Job<'_>,
    context: &Context,
    budget: &mut Budget,
) -> Result<(), SyncError> {
    let template_error = |mut error: TemplateError| {
        if job.from_secret
            && let Some(location) = error.location.as_mut()
        {
            location.snippet.clear();
        }
        SyncError::Template {
            field: job.field.to_string(),
            error,
        }
    };
    let rendered = Template::parse(job.text)
        .and_then(|mut t| t.render(context, budget))
        .map_err(template_error)?;
    let entries: Vec<(String, SecretValue)> = match job.scope {
        TemplateScope::Values => vec![(job.key.to_string(), rendered)],
        TemplateScope::KeysAndValues => {
            // Neither the parser's message nor the keys may be shown: both
            // come from the rendered output, which holds values.
            let text = rendered.expose_str().ok_or_else(|| {
                template_error(TemplateError::new(
                    "the rendered output is not text, so not a YAML map of keys to values",
                ))
            })?;
            let not_a_map = || {
                template_error(TemplateError::new(
                    "the rendered output is not a YAML map of keys to string values",
                ))
            };
            let map = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
                Ok(serde_yaml_ng::Value::Mapping(map)) => map,
                // An empty output is an empty map, as for ESO.
                Ok(serde_yaml_ng::Value::Null) => Default::default(),
                _ => return Err(not_a_map()),
            };
            let mut entries = Vec::with_capacity(map.len());
            for (key, value) in map {
                let key = scalar_text(&key, false).ok_or_else(not_a_map)?;
                let value = scalar_text(&value, true).ok_or_else(not_a_map)?;
                entries.push((key, SecretValue::from(value)));
            }
            entries
        }
    };
    for (key, value) in entries {
        let value = decode(value, job.decoding).map_err(|strategy| {
            template_error(TemplateError::new(format!(
                "a rendered value is not valid {strategy} (valuesDecodingStrategy)"
            )))
        })?;
        match job.target {
            TemplateTarget::Data => {
                if !crate::api::is_valid_secret_key(&key) {
                    // The key came out of a template, so it may be made of
                    // values: say what is wrong, not what it is.
                    let message = if job.scope == TemplateScope::KeysAndValues {
                        format!(
                            "the rendered map has a key that is not a valid Secret key (keys must match {SECRET_KEY_PATTERN})"
                        )
                    } else {
                        format!("the key must match {SECRET_KEY_PATTERN}")
                    };
                    return Err(template_error(TemplateError::new(message)));
                }
                out.data.insert(key, value);
            }
            TemplateTarget::Labels => {
                out.labels.insert(key, text_of(value));
            }
            TemplateTarget::Annotations => {
                out.annotations.insert(key, text_of(value));
            }
        }
    }
    Ok(())
}

/// Labels and annotations are text.
fn text_of(value: SecretValue) -> String {
    String::from_utf8_lossy(value.expose()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TemplateFrom, TemplateRef, TemplateRefItem};
    use crate::template::RenderLimits;

    fn from_secret(template: &str) -> (ExternalSecretTemplate, TemplateSources) {
        let spec = ExternalSecretTemplate {
            template_from: vec![TemplateFrom {
                secret: Some(TemplateRef {
                    name: "tpl".into(),
                    items: vec![TemplateRefItem {
                        key: "conf".into(),
                        template_as: TemplateScope::Values,
                    }],
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut sources = TemplateSources::default();
        sources.secrets.insert(
            "tpl".into(),
            BTreeMap::from([("conf".to_string(), SecretValue::from(template))]),
        );
        (spec, sources)
    }

    #[test]
    fn errors_in_templates_kept_in_a_secret_give_no_text() {
        let (spec, sources) = from_secret("line one\n{{ fail \"Embedded-Tmpl-Secret\" }}");
        let fetched = BTreeMap::from([("pw".to_string(), SecretValue::from("x"))]);
        let Err(error) = apply_template(
            &spec,
            fetched,
            &sources,
            &mut RenderLimits::default().start(),
        ) else {
            panic!("must fail");
        };
        let shown = error.to_string();
        assert!(
            shown.contains("templateFrom[0].secret.items[conf]: line 2, column"),
            "{shown}"
        );
        assert!(shown.contains("function \"fail\" failed"), "{shown}");
        assert!(!shown.contains("Embedded-Tmpl-Secret"), "{shown}");
    }

    #[test]
    fn an_invalid_key_from_a_template_is_not_shown() {
        let spec = ExternalSecretTemplate {
            template_from: vec![TemplateFrom {
                literal: Some("{{ .pw }}/x: v".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let fetched = BTreeMap::from([("pw".to_string(), SecretValue::from("Key-Made-Of-Secret"))]);
        let Err(error) = apply_template(
            &spec,
            fetched,
            &TemplateSources::default(),
            &mut RenderLimits::default().start(),
        ) else {
            panic!("must fail");
        };
        let shown = error.to_string();
        assert!(
            shown.contains(
                "templateFrom[0].literal: the rendered map has a key that is not a valid Secret key"
            ),
            "{shown}"
        );
        assert!(
            !shown.to_lowercase().contains("key-made-of-secret"),
            "{shown}"
        );
    }
}
