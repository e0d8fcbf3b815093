//! Finalizers on the objects the controller cleans up after (its own
//! ClusterExternalSecrets and PushSecrets, ESO's namespaces): merge patches
//! guarded by the resourceVersion the list was read at, so a concurrent
//! change makes the write fail (409) rather than drop another's finalizer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Error;

/// A patch setting `finalizers` without those in `remove`; `None`: none to
/// remove.
pub fn removal_patch(metadata: &ObjectMeta, remove: &[&str]) -> Option<serde_json::Value> {
    let finalizers = metadata.finalizers.as_deref().unwrap_or_default();
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| !remove.contains(&f.as_str()))
        .collect();
    (kept.len() != finalizers.len()).then(|| patch(metadata, kept))
}

/// A patch adding `finalizer`; `None`: it is there already.
pub fn addition_patch(metadata: &ObjectMeta, finalizer: &str) -> Option<serde_json::Value> {
    let finalizers = metadata.finalizers.as_deref().unwrap_or_default();
    if finalizers.iter().any(|f| f == finalizer) {
        return None;
    }
    let mut all: Vec<&String> = finalizers.iter().collect();
    let added = finalizer.to_string();
    all.push(&added);
    Some(patch(metadata, all))
}

fn patch(metadata: &ObjectMeta, finalizers: Vec<&String>) -> serde_json::Value {
    json!({"metadata": {
        "resourceVersion": metadata.resource_version,
        "finalizers": finalizers,
    }})
}

/// Applies such a patch (if any) to the object `name`; one already gone is
/// no error.
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    patch: Option<serde_json::Value>,
) -> Result<(), Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(patch) = patch else {
        return Ok(());
    };
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_keep_other_finalizers_and_guard_the_version() {
        let metadata = ObjectMeta {
            resource_version: Some("7".into()),
            finalizers: Some(vec!["a".into(), "mine".into(), "b".into()]),
            ..Default::default()
        };
        let patch = removal_patch(&metadata, &["other", "mine"]).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["a", "b"]}})
        );
        assert!(removal_patch(&metadata, &["other"]).is_none());
        assert!(removal_patch(&Default::default(), &["mine"]).is_none());
        assert!(addition_patch(&metadata, "mine").is_none());
        assert_eq!(
            addition_patch(&metadata, "new").unwrap(),
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["a", "mine", "b", "new"]}})
        );
    }
}
