//! What a workload's annotations ask for: secretsync's own and Stakater
//! Reloader's, with Reloader's meaning:
//!
//! - `reloader.stakater.com/auto: "true"`: every Secret, ConfigMap and
//!   SecretProviderClass the pod template uses; `secret.reloader.stakater.com/auto` /
//!   `configmap.reloader.stakater.com/auto` / `secretproviderclass.reloader.stakater.com/auto`:
//!   only those of one kind. These two are read as Go's `strconv.ParseBool`
//!   reads them (`true`, `True`, `TRUE`, `t`, `T`, `1`), as Reloader does; every
//!   other flag must be exactly `"true"`, as in Reloader.
//! - `secret.reloader.stakater.com/reload` / `configmap.reloader.stakater.com/reload`:
//!   a comma-separated list of names, each a regular expression matched against
//!   the whole name; the objects need not be used by the template. An entry
//!   that is not a valid expression is skipped (said once in the log), as in
//!   Reloader.
//! - `reloader.stakater.com/search: "true"`: the used objects that carry
//!   `reloader.stakater.com/match: "true"`.
//! - `secrets.exclude.reloader.stakater.com/reload` /
//!   `configmaps.exclude.reloader.stakater.com/reload` /
//!   `secretproviderclasses.exclude.reloader.stakater.com/reload`: names never
//!   counted, always read from the workload's own metadata (never the pod
//!   template's), as Reloader reads them.
//! - `reloader.stakater.com/ignore: "true"` on a Secret or ConfigMap: it never
//!   restarts anything.
//! - `deployment.reloader.stakater.com/pause-period` on a Deployment: after a
//!   restart, the next one waits this long; changes meanwhile make one.
//!
//! - `reloader.stakater.com/rollout-strategy: restart` on an Argo Rollout:
//!   restart it by `spec.restartAt`; anything else (Reloader's default,
//!   `rollout`) updates its pod template, which runs its canary or blue-green.
//!
//! As in Reloader, the selecting ones are read from the workload's metadata if
//! it has any of them for a kind, else from the pod template's. secretsync's own,
//! `secretsync.io/reload: "true"` (every used object), `secretsync.io/reload-secrets`
//! and `secretsync.io/reload-configmaps` (exact names), are read from the
//! workload's metadata; `secretsync.io/reload: "false"` opts the workload out
//! of everything, Reloader's annotations included.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::ObjKind;

pub const RELOAD: &str = "secretsync.io/reload";
pub const RELOAD_SECRETS: &str = "secretsync.io/reload-secrets";
pub const RELOAD_CONFIGMAPS: &str = "secretsync.io/reload-configmaps";

pub const RELOADER_AUTO: &str = "reloader.stakater.com/auto";
pub const RELOADER_SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
pub const RELOADER_CONFIGMAP_AUTO: &str = "configmap.reloader.stakater.com/auto";
pub const RELOADER_SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
pub const RELOADER_CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";
pub const RELOADER_SECRET_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
pub const RELOADER_CONFIGMAP_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
pub const RELOADER_SEARCH: &str = "reloader.stakater.com/search";
pub const RELOADER_MATCH: &str = "reloader.stakater.com/match";
pub const RELOADER_IGNORE: &str = "reloader.stakater.com/ignore";
pub const RELOADER_PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
pub const RELOADER_SPC_AUTO: &str = "secretproviderclass.reloader.stakater.com/auto";
pub const RELOADER_SPC_RELOAD: &str = "secretproviderclass.reloader.stakater.com/reload";
pub const RELOADER_SPC_EXCLUDE: &str = "secretproviderclasses.exclude.reloader.stakater.com/reload";
pub const RELOADER_ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";

pub type Annotations = BTreeMap<String, String>;

/// Which objects of one kind count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindSelection {
    /// Every used object of this kind.
    pub auto: bool,
    /// The used objects of this kind carrying `reloader.stakater.com/match: "true"`.
    pub search: bool,
    /// Named objects, used or not.
    pub named: Vec<NamePattern>,
    /// Names that never count.
    pub excluded: BTreeSet<String>,
}

impl KindSelection {
    /// Whether the object `name` of this kind counts: not excluded, and
    /// either used (`used`: a container reads it) and selected by `auto`, or
    /// by `search` when it carries `match` (`matched`), or named in a list.
    /// The one rule for the controller's restarts and `secretsync diff`.
    pub fn selects(&self, name: &str, used: bool, matched: bool) -> bool {
        !self.excluded.contains(name)
            && ((used && (self.auto || (self.search && matched)))
                || self.named.iter().any(|pattern| pattern.matches(name)))
    }

    fn asks_for_anything(&self) -> bool {
        self.auto || self.search || !self.named.is_empty()
    }
}

/// What a workload asks for, per kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub secrets: KindSelection,
    pub config_maps: KindSelection,
    pub provider_classes: KindSelection,
    /// Entries of Reloader's lists that are not valid expressions (skipped).
    pub invalid: Vec<String>,
}

impl Selection {
    pub fn of(&self, kind: ObjKind) -> &KindSelection {
        match kind {
            ObjKind::Secret => &self.secrets,
            ObjKind::ConfigMap => &self.config_maps,
            ObjKind::SecretProviderClass => &self.provider_classes,
        }
    }
}

/// One entry of a names list: an exact name, or (Reloader's lists) a regular
/// expression over the whole name.
#[derive(Clone, Debug)]
pub enum NamePattern {
    Exact(String),
    Pattern(regex::Regex),
}

impl NamePattern {
    /// Reloader's rule: a regular expression over the whole name; one that
    /// does not compile counts nothing (`None`). Entries made only of name
    /// characters are exact names.
    fn reloader(entry: &str) -> Option<Self> {
        if entry
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Some(NamePattern::Exact(entry.into()));
        }
        regex::RegexBuilder::new(&format!("^(?:{entry})$"))
            .size_limit(1 << 16)
            .build()
            .map(NamePattern::Pattern)
            .ok()
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => exact == name,
            NamePattern::Pattern(pattern) => pattern.is_match(name),
        }
    }

    pub fn exact(&self) -> Option<&str> {
        match self {
            NamePattern::Exact(exact) => Some(exact),
            NamePattern::Pattern(_) => None,
        }
    }
}

impl PartialEq for NamePattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NamePattern::Exact(a), NamePattern::Exact(b)) => a == b,
            (NamePattern::Pattern(a), NamePattern::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

fn list(value: Option<&String>) -> impl Iterator<Item = &str> {
    value
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Reloader's plain comparison (`search`, `match`, `ignore`).
fn is_true(annotations: &Annotations, key: &str) -> bool {
    annotations.get(key).is_some_and(|v| v == "true")
}

/// Go's `strconv.ParseBool`, which Reloader uses for `auto` and the typed
/// `auto` annotations.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parses_true(annotations: &Annotations, key: &str) -> bool {
    annotations
        .get(key)
        .and_then(|v| parse_bool(v))
        .unwrap_or(false)
}

/// Reloader's keys for one kind: (typed auto, explicit list, exclude list).
fn reloader_keys(kind: ObjKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        ObjKind::Secret => (
            RELOADER_SECRET_AUTO,
            RELOADER_SECRET_RELOAD,
            RELOADER_SECRET_EXCLUDE,
        ),
        ObjKind::ConfigMap => (
            RELOADER_CONFIGMAP_AUTO,
            RELOADER_CONFIGMAP_RELOAD,
            RELOADER_CONFIGMAP_EXCLUDE,
        ),
        ObjKind::SecretProviderClass => {
            (RELOADER_SPC_AUTO, RELOADER_SPC_RELOAD, RELOADER_SPC_EXCLUDE)
        }
    }
}

/// Reloader's selection for one kind, from whichever of the two annotation
/// sets speaks of it (the workload's first); the exclude list always from the
/// workload's. Entries that are not valid expressions go to `invalid`.
fn reloader_selection(
    kind: ObjKind,
    workload: &Annotations,
    template: &Annotations,
    invalid: &mut Vec<String>,
) -> KindSelection {
    let (typed_auto, explicit, exclude) = reloader_keys(kind);
    let speaks = |a: &Annotations| {
        [explicit, RELOADER_SEARCH, RELOADER_AUTO, typed_auto]
            .iter()
            .any(|key| a.contains_key(*key))
    };
    let chosen = if speaks(workload) || !speaks(template) {
        workload
    } else {
        template
    };
    let mut named = Vec::new();
    for entry in list(chosen.get(explicit)) {
        match NamePattern::reloader(entry) {
            Some(pattern) => named.push(pattern),
            None => invalid.push(format!("{explicit}: {entry:?} is not a valid expression")),
        }
    }
    KindSelection {
        auto: parses_true(chosen, RELOADER_AUTO) || parses_true(chosen, typed_auto),
        search: is_true(chosen, RELOADER_SEARCH),
        named,
        excluded: list(workload.get(exclude)).map(str::to_string).collect(),
    }
}

/// What the workload asks for; `None` when it does not opt in, or opts out
/// with `secretsync.io/reload: "false"`.
pub fn selection(workload: &Annotations, template: &Annotations) -> Option<Selection> {
    if workload.get(RELOAD).is_some_and(|v| v == "false") {
        return None;
    }
    let all = is_true(workload, RELOAD);
    let mut invalid = Vec::new();
    let kinds = ObjKind::ALL.map(|kind| {
        let mut selection = reloader_selection(kind, workload, template, &mut invalid);
        selection.auto |= all;
        let ours = match kind {
            ObjKind::Secret => Some(RELOAD_SECRETS),
            ObjKind::ConfigMap => Some(RELOAD_CONFIGMAPS),
            ObjKind::SecretProviderClass => None,
        };
        if let Some(ours) = ours {
            selection
                .named
                .extend(list(workload.get(ours)).map(|name| NamePattern::Exact(name.to_string())));
        }
        selection
    });
    if !kinds.iter().any(KindSelection::asks_for_anything) {
        return None;
    }
    let [secrets, config_maps, provider_classes] = kinds;
    Some(Selection {
        secrets,
        config_maps,
        provider_classes,
        invalid,
    })
}

/// `deployment.reloader.stakater.com/pause-period`, if set.
pub fn pause_period(workload: &Annotations) -> Result<Option<Duration>, String> {
    workload
        .get(RELOADER_PAUSE_PERIOD)
        .map(|text| {
            super::parse_duration(text).map_err(|e| format!("{RELOADER_PAUSE_PERIOD}: {e}"))
        })
        .transpose()
}

/// On an Argo Rollout: `reloader.stakater.com/rollout-strategy: restart`
/// (only that exact word, as Reloader reads it) restarts by `spec.restartAt`.
pub fn rollout_restarts(workload: &Annotations) -> bool {
    workload
        .get(RELOADER_ROLLOUT_STRATEGY)
        .is_some_and(|v| v == "restart")
}

/// On a Secret, ConfigMap or SecretProviderClass: (`reloader.stakater.com/ignore`, `reloader.stakater.com/match`).
pub fn object_flags(annotations: Option<&Annotations>) -> (bool, bool) {
    annotations.map_or((false, false), |a| {
        (is_true(a, RELOADER_IGNORE), is_true(a, RELOADER_MATCH))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn of(workload: &[(&str, &str)]) -> Option<Selection> {
        selection(&map(workload), &Annotations::new())
    }

    #[test]
    fn nothing_asked_is_no_opt_in() {
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[("app", "x"), (RELOAD, "no")]), None);
        assert_eq!(of(&[(RELOADER_AUTO, "false")]), None);
        assert_eq!(of(&[(RELOADER_SEARCH, "false")]), None);
    }

    #[test]
    fn secretsync_reload_true_takes_every_used_object_of_both_kinds() {
        let s = of(&[(RELOAD, "true")]).unwrap();
        assert!(s.secrets.auto && s.config_maps.auto);
        assert!(!s.secrets.search && s.secrets.named.is_empty());
    }

    #[test]
    fn secretsync_named_lists_are_exact_names() {
        let s = of(&[(RELOAD_SECRETS, " a, b ,,"), (RELOAD_CONFIGMAPS, "c.d")]).unwrap();
        assert!(!s.secrets.auto && !s.config_maps.auto);
        assert_eq!(
            s.secrets.named,
            [
                NamePattern::Exact("a".into()),
                NamePattern::Exact("b".into())
            ]
        );
        assert_eq!(s.config_maps.named, [NamePattern::Exact("c.d".into())]);
        assert!(!s.config_maps.named[0].matches("cxd"));
    }

    #[test]
    fn reload_false_opts_out_of_everything() {
        assert_eq!(of(&[(RELOAD, "false"), (RELOADER_AUTO, "true")]), None);
        assert_eq!(of(&[(RELOAD, "false"), (RELOAD_SECRETS, "a")]), None);
    }

    #[test]
    fn reloader_auto_and_typed_auto() {
        let s = of(&[(RELOADER_AUTO, "true")]).unwrap();
        assert!(s.secrets.auto && s.config_maps.auto);
        let s = of(&[(RELOADER_SECRET_AUTO, "true")]).unwrap();
        assert!(s.secrets.auto && !s.config_maps.auto);
        let s = of(&[(RELOADER_CONFIGMAP_AUTO, "true")]).unwrap();
        assert!(!s.secrets.auto && s.config_maps.auto);
    }

    #[test]
    fn reloader_lists_are_whole_name_regular_expressions() {
        let s = of(&[
            (RELOADER_SECRET_RELOAD, "db-.*, plain,bro[ken"),
            (RELOADER_CONFIGMAP_RELOAD, "app.config"),
        ])
        .unwrap();
        let secrets = &s.secrets.named;
        assert!(secrets[0].matches("db-1") && !secrets[0].matches("xdb-1"));
        assert_eq!(secrets[1], NamePattern::Exact("plain".into()));
        assert_eq!(secrets.len(), 2, "a broken expression is skipped");
        assert_eq!(s.invalid.len(), 1);
        assert!(s.invalid[0].contains("bro[ken"), "{:?}", s.invalid);
        assert!(s.config_maps.named[0].matches("app.config"));
        assert!(!s.config_maps.named[0].matches("app.config2"));
        assert!(!s.secrets.auto && s.config_maps.named.len() == 1);
    }

    #[test]
    fn reloader_search_and_exclude() {
        let s = of(&[(RELOADER_SEARCH, "true"), (RELOADER_SECRET_EXCLUDE, "a, b")]).unwrap();
        assert!(s.secrets.search && s.config_maps.search);
        assert_eq!(
            s.secrets.excluded,
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        assert!(s.config_maps.excluded.is_empty());
    }

    #[test]
    fn reloader_annotations_on_the_pod_template_count_when_the_workload_has_none() {
        let template = map(&[(RELOADER_AUTO, "true")]);
        let s = selection(&Annotations::new(), &template).unwrap();
        assert!(s.secrets.auto && s.config_maps.auto);
        // The workload's own annotations for a kind win over the template's.
        let s = selection(&map(&[(RELOADER_SECRET_RELOAD, "x")]), &template).unwrap();
        assert!(!s.secrets.auto && s.config_maps.auto);
        // secretsync's annotations are read from the workload only.
        assert_eq!(
            selection(&Annotations::new(), &map(&[(RELOAD, "true")])),
            None
        );
    }

    #[test]
    fn auto_flags_parse_as_go_parse_bool_and_the_others_need_true() {
        for yes in ["true", "True", "TRUE", "t", "T", "1"] {
            let s = of(&[(RELOADER_AUTO, yes)]).unwrap();
            assert!(s.secrets.auto && s.config_maps.auto, "{yes}");
            let s = of(&[(RELOADER_SECRET_AUTO, yes)]).unwrap();
            assert!(s.secrets.auto && !s.config_maps.auto, "{yes}");
            let s = of(&[(RELOADER_SPC_AUTO, yes)]).unwrap();
            assert!(s.provider_classes.auto && !s.secrets.auto, "{yes}");
        }
        for no in ["false", "False", "0", "f", "yes", "on", "tRue", " true", ""] {
            assert_eq!(of(&[(RELOADER_AUTO, no)]), None, "{no:?}");
        }
        // search is compared with "true" as Reloader does.
        assert_eq!(of(&[(RELOADER_SEARCH, "True")]), None);
        assert!(of(&[(RELOADER_SEARCH, "true")]).unwrap().secrets.search);
        let flags = map(&[(RELOADER_IGNORE, "True"), (RELOADER_MATCH, "1")]);
        assert_eq!(object_flags(Some(&flags)), (false, false));
    }

    #[test]
    fn exclude_lists_come_from_the_workload_even_when_the_template_selects() {
        let template = map(&[
            (RELOADER_AUTO, "true"),
            (RELOADER_SECRET_EXCLUDE, "from-template"),
        ]);
        let workload = map(&[(RELOADER_SECRET_EXCLUDE, "a, b"), ("app", "x")]);
        let s = selection(&workload, &template).unwrap();
        assert!(s.secrets.auto, "the template's auto counts");
        assert_eq!(
            s.secrets.excluded,
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        let s = selection(&Annotations::new(), &template).unwrap();
        assert!(s.secrets.excluded.is_empty(), "never the template's list");
    }

    #[test]
    fn provider_class_annotations_and_rollout_strategy() {
        let s = of(&[
            (RELOADER_SPC_RELOAD, "vault-spc"),
            (RELOADER_SPC_EXCLUDE, "x"),
        ])
        .unwrap();
        assert_eq!(
            s.provider_classes.named,
            [NamePattern::Exact("vault-spc".into())]
        );
        assert!(s.provider_classes.excluded.contains("x"));
        assert!(!s.secrets.auto && s.secrets.named.is_empty());
        assert!(
            of(&[(RELOADER_AUTO, "true")])
                .unwrap()
                .provider_classes
                .auto
        );
        assert!(rollout_restarts(&map(&[(
            RELOADER_ROLLOUT_STRATEGY,
            "restart"
        )])));
        for other in ["rollout", "Restart", ""] {
            assert!(!rollout_restarts(&map(&[(
                RELOADER_ROLLOUT_STRATEGY,
                other
            )])));
        }
        assert!(!rollout_restarts(&map(&[])));
    }

    #[test]
    fn pause_period_is_a_go_duration() {
        assert_eq!(pause_period(&map(&[])), Ok(None));
        assert_eq!(
            pause_period(&map(&[(RELOADER_PAUSE_PERIOD, "2m")])),
            Ok(Some(Duration::from_secs(120)))
        );
        let error = pause_period(&map(&[(RELOADER_PAUSE_PERIOD, "soon")])).unwrap_err();
        assert!(error.starts_with(RELOADER_PAUSE_PERIOD), "{error}");
    }

    #[test]
    fn ignore_and_match_on_objects() {
        assert_eq!(object_flags(None), (false, false));
        assert_eq!(
            object_flags(Some(&map(&[(RELOADER_IGNORE, "true")]))),
            (true, false)
        );
        assert_eq!(
            object_flags(Some(&map(&[
                (RELOADER_MATCH, "true"),
                (RELOADER_IGNORE, "yes")
            ]))),
            (false, true)
        );
    }
}
