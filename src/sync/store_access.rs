//! Which namespaces may use a ClusterSecretStore.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use regex::Regex;

use crate::api::ClusterSecretStoreSpec;

/// As ESO: no conditions admit every namespace; otherwise a namespace is
/// admitted when any condition's selector, name list or regex (unanchored)
/// matches it. `labels` are the namespace's labels.
pub fn cluster_store_admits(
    spec: &ClusterSecretStoreSpec,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if spec.conditions.is_empty() {
        return true;
    }
    spec.conditions.iter().any(|condition| {
        let by_selector = condition
            .namespace_selector
            .clone()
            .is_some_and(|selector| {
                Selector::try_from(selector).is_ok_and(|selector| selector.matches(labels))
            });
        let by_name = condition.namespaces.iter().any(|n| n == namespace);
        let by_regex = condition
            .namespace_regexes
            .iter()
            .any(|pattern| Regex::new(pattern).is_ok_and(|re| re.is_match(namespace)));
        by_selector || by_name || by_regex
    })
}
