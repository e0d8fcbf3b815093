//! The workload kinds, what secretsync keeps of each workload (never the
//! object itself), and the server-side apply patches that restart one or only
//! record its hash.
//!
//! Deployments, StatefulSets and DaemonSets roll when their pod template
//! changes: a restart sets [`HASH_ANNOTATION`] on the template. An Argo Rollout
//! gets the same by default (Reloader's `rollout` strategy: the template
//! changes, so the Rollout runs its canary or blue-green steps); with
//! `reloader.stakater.com/rollout-strategy: restart` it gets `spec.restartAt`
//! instead, as `kubectl argo rollouts restart` does, and its template is left
//! alone. A CronJob, as in Reloader, is left as it is and a Job is created
//! from its `jobTemplate` at once (`cronjob.kubernetes.io/instantiate:
//! manual`, owned by the CronJob); a Job is deleted (background propagation)
//! and created again from its own spec, as Reloader does, the hash on the new
//! one's template. Every kind also gets the hash and the restart time on its
//! own metadata, which rolls nothing.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::annotations::{self, Annotations, Selection};
use super::uses::{Uses, uses};
use super::{HASH_ANNOTATION, RESTARTED_AT_ANNOTATION};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Rollout,
    CronJob,
    Job,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::Rollout,
        WorkloadKind::CronJob,
        WorkloadKind::Job,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Rollout => "Rollout",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Job => "Job",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version, plural) = match self {
            WorkloadKind::Deployment => ("apps", "v1", "deployments"),
            WorkloadKind::StatefulSet => ("apps", "v1", "statefulsets"),
            WorkloadKind::DaemonSet => ("apps", "v1", "daemonsets"),
            WorkloadKind::Rollout => ("argoproj.io", "v1alpha1", "rollouts"),
            WorkloadKind::CronJob => ("batch", "v1", "cronjobs"),
            WorkloadKind::Job => ("batch", "v1", "jobs"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.as_str()),
            plural,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadKey {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// What secretsync keeps of an opted-in workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadInfo {
    pub key: WorkloadKey,
    pub uid: String,
    pub selection: Selection,
    pub uses: Uses,
    /// [`HASH_ANNOTATION`] on the workload's metadata, else on its template.
    pub memory: Option<String>,
    /// [`RESTARTED_AT_ANNOTATION`], when it parses.
    pub restarted_at: Option<jiff::Timestamp>,
    /// `deployment.reloader.stakater.com/pause-period` (Deployments only).
    pub pause: Option<Duration>,
    /// A Rollout with `reloader.stakater.com/rollout-strategy: restart`.
    pub restart_at: bool,
    /// Something about the workload's annotations or template that is ignored.
    pub problem: Option<String>,
}

/// What secretsync keeps of a workload: `None` when it does not opt in.
pub fn derive(
    kind: WorkloadKind,
    metadata: &ObjectMeta,
    template: Result<Option<&PodTemplateSpec>, String>,
) -> Option<WorkloadInfo> {
    let empty = Annotations::new();
    let own = metadata.annotations.as_ref().unwrap_or(&empty);
    let (template, mut problem) = match template {
        Ok(template) => (template, None),
        Err(e) => (None, Some(e)),
    };
    let template_annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .unwrap_or(&empty);
    let selection = annotations::selection(own, template_annotations)?;
    if let Some(invalid) = selection.invalid.first() {
        problem.get_or_insert_with(|| invalid.clone());
    }
    let pause = if kind == WorkloadKind::Deployment {
        annotations::pause_period(own).unwrap_or_else(|e| {
            problem.get_or_insert(e);
            None
        })
    } else {
        None
    };
    let memory = own
        .get(HASH_ANNOTATION)
        .or_else(|| template_annotations.get(HASH_ANNOTATION))
        .cloned();
    Some(WorkloadInfo {
        key: WorkloadKey {
            kind,
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone().unwrap_or_default(),
        },
        uid: metadata.uid.clone().unwrap_or_default(),
        selection,
        uses: template
            .and_then(|t| t.spec.as_ref())
            .map(uses)
            .unwrap_or_default(),
        memory,
        restarted_at: own
            .get(RESTARTED_AT_ANNOTATION)
            .and_then(|t| t.parse().ok()),
        pause,
        restart_at: kind == WorkloadKind::Rollout && annotations::rollout_restarts(own),
        problem,
    })
}

/// An Argo Rollout's pod template (`spec.template`), read from the untyped object.
pub fn rollout_template(spec: &Value) -> Result<Option<PodTemplateSpec>, String> {
    if spec.get("workloadRef").is_some() {
        return Err(
            "spec.workloadRef: the referenced workload's template is not read; \
                    name the objects with secretsync.io/reload-secrets / reload-configmaps"
                .into(),
        );
    }
    match spec.get("template") {
        None | Some(Value::Null) => Ok(None),
        Some(template) => serde_json::from_value(template.clone())
            .map(Some)
            .map_err(|e| format!("spec.template: {e}")),
    }
}

fn header(key: &WorkloadKey, uid: &str) -> Value {
    let resource = key.kind.api_resource();
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": key.name, "namespace": key.namespace, "uid": uid},
    })
}

/// RFC 3339 in UTC, to the millisecond.
pub fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The restart, applied by [`super::RESTART_MANAGER`]: always the same fields,
/// so nothing it set before is dropped. The `uid` makes the write fail on a
/// workload deleted and created again under the same name. For a CronJob
/// this is only its metadata (the Job is [`job_from_cron_job`]); a Job is not
/// patched but recreated ([`job_again`]).
pub fn restart_patch(
    key: &WorkloadKey,
    uid: &str,
    hash: &str,
    at: jiff::Timestamp,
    restart_at: bool,
) -> Value {
    let mut patch = header(key, uid);
    patch["metadata"]["annotations"] = json!({
        HASH_ANNOTATION: hash,
        RESTARTED_AT_ANNOTATION: timestamp(at),
    });
    match key.kind {
        WorkloadKind::Rollout if restart_at => {
            patch["spec"] = json!({"restartAt": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
        }
        WorkloadKind::CronJob | WorkloadKind::Job => {}
        _ => {
            patch["spec"] =
                json!({"template": {"metadata": {"annotations": {HASH_ANNOTATION: hash}}}});
        }
    }
    patch
}

/// The Job a restarted CronJob runs now, as Reloader (and `kubectl create job
/// --from=cronjob/...`) makes it: named after the CronJob, its `jobTemplate`'s
/// labels, annotations and spec, `cronjob.kubernetes.io/instantiate: manual`,
/// owned by the CronJob; the hash on its pod template.
pub fn job_from_cron_job(cron_job: &Value, hash: &str) -> Result<Value, String> {
    let metadata = &cron_job["metadata"];
    let (Some(name), Some(uid)) = (metadata["name"].as_str(), metadata["uid"].as_str()) else {
        return Err("the CronJob has no name or uid".into());
    };
    let template = &cron_job["spec"]["jobTemplate"];
    let Some(spec) = template.get("spec").filter(|s| s.is_object()) else {
        return Err("the CronJob has no spec.jobTemplate.spec".into());
    };
    let mut annotations = json!({"cronjob.kubernetes.io/instantiate": "manual"});
    if let (Some(all), Some(extra)) = (
        annotations.as_object_mut(),
        template["metadata"]["annotations"].as_object(),
    ) {
        all.extend(extra.clone());
    }
    let mut spec = spec.clone();
    spec["template"]["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": metadata["namespace"],
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
                "uid": uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        job["metadata"]["labels"] = Value::Object(labels.clone());
    }
    Ok(job)
}

/// The Job created again in place of a restarted one, as Reloader does it:
/// the same object without what the server set (uid, resourceVersion,
/// creation time, status, the selector and the labels the Job controller
/// adds), the hash and restart time on its metadata and the hash on its pod
/// template.
pub fn job_again(job: &Value, hash: &str, at: jiff::Timestamp) -> Value {
    let mut job = job.clone();
    if let Some(metadata) = job["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(job) = job.as_object_mut() {
        job.remove("status");
    }
    job["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
    job["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] = json!(timestamp(at));
    if let Some(spec) = job["spec"].as_object_mut() {
        spec.remove("selector");
    }
    for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = job.pointer_mut(path).and_then(Value::as_object_mut) {
            for label in [
                "controller-uid",
                "batch.kubernetes.io/controller-uid",
                "batch.kubernetes.io/job-name",
                "job-name",
            ] {
                labels.remove(label);
            }
        }
    }
    job["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
    job
}

/// Only the hash on the workload's metadata, applied by
/// [`super::RECORD_MANAGER`]: it rolls nothing.
pub fn record_patch(key: &WorkloadKey, uid: &str, hash: &str) -> Value {
    let mut patch = header(key, uid);
    patch["metadata"]["annotations"] = json!({HASH_ANNOTATION: hash});
    patch
}

/// What an Event about the workload points at.
pub fn reference(key: &WorkloadKey, uid: &str) -> ObjectReference {
    let resource = key.kind.api_resource();
    ObjectReference {
        api_version: Some(resource.api_version),
        kind: Some(resource.kind),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid: Some(uid.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reload::ObjKind;

    fn metadata(annotations: Value) -> ObjectMeta {
        serde_json::from_value(
            json!({"name": "app", "namespace": "team", "uid": "u-1", "annotations": annotations}),
        )
        .unwrap()
    }

    fn template(value: Value) -> PodTemplateSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_workload_that_does_not_opt_in_is_not_kept() {
        let t = template(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert!(derive(WorkloadKind::Deployment, &metadata(json!({})), Ok(Some(&t))).is_none());
    }

    #[test]
    fn what_is_kept_of_an_opted_in_workload() {
        let t = template(
            json!({"metadata": {"annotations": {HASH_ANNOTATION: "from-template"}},
            "spec": {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "db"}}]}]}}),
        );
        let m = metadata(json!({"secretsync.io/reload": "true",
            RESTARTED_AT_ANNOTATION: "2026-01-02T03:04:05.678Z",
            "deployment.reloader.stakater.com/pause-period": "1m"}));
        let info = derive(WorkloadKind::Deployment, &m, Ok(Some(&t))).unwrap();
        assert_eq!(info.key.to_string(), "Deployment team/app");
        assert_eq!(info.uid, "u-1");
        assert_eq!(info.memory.as_deref(), Some("from-template"));
        assert_eq!(
            info.uses.keys().collect::<Vec<_>>(),
            [&(ObjKind::Secret, "db".to_string())]
        );
        assert!(!info.restart_at);
        assert_eq!(
            info.restarted_at.map(timestamp).as_deref(),
            Some("2026-01-02T03:04:05.678Z")
        );
        assert_eq!(info.pause, Some(Duration::from_secs(60)));
        assert_eq!(info.problem, None);

        // The metadata's hash wins over the template's; a bad pause-period is
        // a problem, not a failure; pause-period is for Deployments only.
        let m = metadata(
            json!({"secretsync.io/reload": "true", HASH_ANNOTATION: "from-metadata",
            "deployment.reloader.stakater.com/pause-period": "soon"}),
        );
        let info = derive(WorkloadKind::Deployment, &m, Ok(Some(&t))).unwrap();
        assert_eq!(info.memory.as_deref(), Some("from-metadata"));
        assert_eq!(info.pause, None);
        assert!(info.problem.unwrap().contains("pause-period"));
        let m = metadata(json!({"secretsync.io/reload": "true",
            "deployment.reloader.stakater.com/pause-period": "1m"}));
        assert_eq!(
            derive(WorkloadKind::StatefulSet, &m, Ok(Some(&t)))
                .unwrap()
                .pause,
            None
        );
    }

    #[test]
    fn a_rollout_template_is_read_from_the_untyped_spec() {
        let spec = json!({"template": {"spec": {"containers": [{"name": "c",
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}]}}});
        let t = rollout_template(&spec).unwrap().unwrap();
        let m = metadata(json!({"reloader.stakater.com/auto": "true"}));
        let info = derive(WorkloadKind::Rollout, &m, Ok(Some(&t))).unwrap();
        assert!(
            info.uses
                .contains_key(&(ObjKind::ConfigMap, "cfg".to_string()))
        );
        assert!(!info.restart_at, "Reloader's default is a template update");
        let m = metadata(json!({"reloader.stakater.com/auto": "True",
            "reloader.stakater.com/rollout-strategy": "restart"}));
        assert!(
            derive(WorkloadKind::Rollout, &m, Ok(Some(&t)))
                .unwrap()
                .restart_at
        );
        assert!(rollout_template(&json!({})).unwrap().is_none());
        let error =
            rollout_template(&json!({"template": {"spec": {"containers": "no"}}})).unwrap_err();
        assert!(error.starts_with("spec.template"), "{error}");
        assert!(rollout_template(&json!({"workloadRef": {"name": "d"}})).is_err());
        let info = derive(WorkloadKind::Rollout, &m, Err("spec.template: bad".into())).unwrap();
        assert!(info.uses.is_empty() && info.problem.is_some());
    }

    #[test]
    fn a_cron_job_runs_a_job_from_its_template_as_reloader_makes_it() {
        let cron = json!({"metadata": {"name": "nightly", "namespace": "team", "uid": "c-1"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"backoffLimit": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}}}});
        let job = job_from_cron_job(&cron, "h1").unwrap();
        assert_eq!(job["metadata"]["generateName"], "nightly-");
        assert_eq!(job["metadata"]["namespace"], "team");
        assert_eq!(
            job["metadata"]["annotations"],
            json!({"cronjob.kubernetes.io/instantiate": "manual", "note": "x"})
        );
        assert_eq!(job["metadata"]["labels"], json!({"team": "a"}));
        let owner = &job["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str()),
            (Some("CronJob"), Some("c-1"))
        );
        assert_eq!(owner["controller"], true);
        assert_eq!(job["spec"]["backoffLimit"], 1);
        assert_eq!(
            job["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION],
            "h1"
        );
        assert!(job_from_cron_job(&json!({"metadata": {"name": "x", "uid": "u"}}), "h").is_err());
    }

    #[test]
    fn a_job_is_created_again_without_what_the_server_set() {
        let at: jiff::Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": "team", "uid": "j-1", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                "labels": {"app": "m", "batch.kubernetes.io/job-name": "migrate"},
                "annotations": {"secretsync.io/reload": "true"}},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j-1"}},
                "template": {"metadata": {"labels": {"app": "m", "controller-uid": "j-1",
                    "batch.kubernetes.io/controller-uid": "j-1", "job-name": "migrate"}},
                    "spec": {"containers": [{"name": "c"}], "restartPolicy": "Never"}}},
            "status": {"succeeded": 1}});
        let again = job_again(&job, "h2", at);
        assert_eq!(again["metadata"]["name"], "migrate");
        for gone in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            assert!(again["metadata"].get(gone).is_none(), "{gone}");
        }
        assert!(again.get("status").is_none() && again["spec"].get("selector").is_none());
        assert_eq!(again["metadata"]["labels"], json!({"app": "m"}));
        assert_eq!(
            again["spec"]["template"]["metadata"]["labels"],
            json!({"app": "m"})
        );
        assert_eq!(again["metadata"]["annotations"][HASH_ANNOTATION], "h2");
        assert_eq!(
            again["metadata"]["annotations"]["secretsync.io/reload"],
            "true"
        );
        assert_eq!(
            again["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION],
            "h2"
        );
    }

    #[test]
    fn patches_touch_only_secretsyncs_fields() {
        let key = |kind| WorkloadKey {
            kind,
            namespace: "team".into(),
            name: "app".into(),
        };
        let at: jiff::Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let deployment = restart_patch(&key(WorkloadKind::Deployment), "u-1", "h1", at, false);
        assert_eq!(
            deployment,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "app", "namespace": "team", "uid": "u-1",
                    "annotations": {HASH_ANNOTATION: "h1", RESTARTED_AT_ANNOTATION: "2026-01-02T03:04:05.678Z"}},
                "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: "h1"}}}}})
        );
        let rollout = restart_patch(&key(WorkloadKind::Rollout), "u-1", "h1", at, true);
        assert_eq!(rollout["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(
            rollout["spec"],
            json!({"restartAt": "2026-01-02T03:04:05Z"})
        );
        // Reloader's default strategy for a Rollout: its template changes.
        let rollout = restart_patch(&key(WorkloadKind::Rollout), "u-1", "h1", at, false);
        assert_eq!(rollout["spec"], deployment["spec"]);
        let cron = restart_patch(&key(WorkloadKind::CronJob), "u-1", "h1", at, false);
        assert_eq!(cron["apiVersion"], "batch/v1");
        assert!(cron.get("spec").is_none(), "a CronJob's spec is left alone");
        let record = record_patch(&key(WorkloadKind::DaemonSet), "u-1", "h2");
        assert_eq!(
            record,
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "app", "namespace": "team", "uid": "u-1",
                    "annotations": {HASH_ANNOTATION: "h2"}}})
        );
        let reference = reference(&key(WorkloadKind::StatefulSet), "u-1");
        assert_eq!(reference.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(reference.kind.as_deref(), Some("StatefulSet"));
    }
}
