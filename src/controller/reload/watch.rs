//! The watches, each turning what it sees into a small message at once:
//! Secrets and ConfigMaps metadata-only (every one in the cluster, including
//! those secretsync does not manage: their data is never sent), and
//! Deployments, StatefulSets, DaemonSets, CronJobs, Jobs and, once their CRD
//! is served, Argo Rollouts, reduced to what [`workload::derive`] keeps; once
//! the Secrets Store CSI driver's CRDs are served, SecretProviderClasses
//! (metadata only) and `SecretProviderClassPodStatus` objects (reduced to
//! their class and a digest of their object versions).

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::annotations::object_flags;
use super::hash::Digest;
use super::tracker::{ObjMeta, PodStatus};
use super::workload::{self, WorkloadInfo, WorkloadKey, WorkloadKind};
use super::{ObjKey, ObjKind};

pub enum Message {
    Object(ObjKind, Event<(ObjKey, ObjMeta)>),
    Workload(
        WorkloadKind,
        Event<(WorkloadKey, Option<Box<WorkloadInfo>>)>,
    ),
    PodStatus(Event<PodStatus>),
}

/// How often to look again for an API (Argo Rollouts, the CSI driver's) that
/// is not served.
const RECHECK: Duration = Duration::from_secs(60);

const CSI_GROUP_VERSION: (&str, &str) = ("secrets-store.csi.x-k8s.io", "v1");

fn csi_resource(kind: &str, plural: &str) -> ApiResource {
    let (group, version) = CSI_GROUP_VERSION;
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn map<A, B>(event: Event<A>, mut f: impl FnMut(A) -> B) -> Event<B> {
    match event {
        Event::Apply(a) => Event::Apply(f(a)),
        Event::Delete(a) => Event::Delete(f(a)),
        Event::Init => Event::Init,
        Event::InitApply(a) => Event::InitApply(f(a)),
        Event::InitDone => Event::InitDone,
    }
}

/// Starts every watch, of the whole cluster or of one `namespace` (with
/// `--namespaces`); they run until the receiver goes away.
pub fn spawn(
    client: kube::Client,
    namespace: Option<&str>,
    tx: mpsc::Sender<Message>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(objects::<Secret>(
            api(&client, namespace),
            ObjKind::Secret,
            tx.clone(),
        )),
        tokio::spawn(objects::<ConfigMap>(
            api(&client, namespace),
            ObjKind::ConfigMap,
            tx.clone(),
        )),
        tokio::spawn(typed_workloads::<Deployment>(
            api(&client, namespace),
            WorkloadKind::Deployment,
            |d| Some(&d.spec.template),
            tx.clone(),
        )),
        tokio::spawn(typed_workloads::<StatefulSet>(
            api(&client, namespace),
            WorkloadKind::StatefulSet,
            |s| Some(&s.spec.template),
            tx.clone(),
        )),
        tokio::spawn(typed_workloads::<DaemonSet>(
            api(&client, namespace),
            WorkloadKind::DaemonSet,
            |d| Some(&d.spec.template),
            tx.clone(),
        )),
        tokio::spawn(typed_workloads::<CronJob>(
            api(&client, namespace),
            WorkloadKind::CronJob,
            |c| c.spec.job_template.spec.as_ref().map(|s| &s.template),
            tx.clone(),
        )),
        tokio::spawn(typed_workloads::<Job>(
            api(&client, namespace),
            WorkloadKind::Job,
            |j| j.spec.as_ref().map(|s| &s.template),
            tx.clone(),
        )),
        tokio::spawn(rollouts(
            client.clone(),
            namespace.map(str::to_string),
            tx.clone(),
        )),
        tokio::spawn(provider_classes(client, namespace.map(str::to_string), tx)),
    ]
}

/// Waits until `resource` is served; false if the receiver went away.
async fn served(client: &kube::Client, resource: &ApiResource, tx: &mpsc::Sender<Message>) -> bool {
    loop {
        let served = client
            .list_api_group_resources(&resource.api_version)
            .await
            .is_ok_and(|list| list.resources.iter().any(|r| r.name == resource.plural));
        if served {
            return true;
        }
        if tx.is_closed() {
            return false;
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// SecretProviderClasses (metadata: existence and Reloader's flags) and their
/// pods' `SecretProviderClassPodStatus`, from the moment the CSI driver's
/// CRDs are served.
async fn provider_classes(
    client: kube::Client,
    namespace: Option<String>,
    tx: mpsc::Sender<Message>,
) {
    let classes = csi_resource("SecretProviderClass", "secretproviderclasses");
    let statuses = csi_resource(
        "SecretProviderClassPodStatus",
        "secretproviderclasspodstatuses",
    );
    if !served(&client, &classes, &tx).await || !served(&client, &statuses, &tx).await {
        return;
    }
    tracing::info!(
        "reload: the Secrets Store CSI driver's CRDs are served; watching SecretProviderClasses"
    );
    let (class_api, status_api): (Api<PartialObjectMeta<DynamicObject>>, Api<DynamicObject>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced_with(client.clone(), ns, &classes),
                Api::namespaced_with(client, ns, &statuses),
            ),
            None => (
                Api::all_with(client.clone(), &classes),
                Api::all_with(client, &statuses),
            ),
        };
    let class_watch = objects_of(class_api, ObjKind::SecretProviderClass, tx.clone());
    let status_watch = pod_statuses(status_api, tx);
    futures::join!(class_watch, status_watch);
}

/// The class a pod status names and a digest of its objects' ids and versions.
pub fn pod_status(object: &DynamicObject) -> Option<PodStatus> {
    let status = object.data.get("status")?;
    let class = status.get("secretProviderClassName")?.as_str()?.to_string();
    let mut pairs: Vec<(String, String)> = status
        .get("objects")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
        .map(|o| {
            let text = |f: &str| {
                o.get(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            (text("id"), text("version"))
        })
        .collect();
    pairs.sort();
    Some(PodStatus {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        class,
        versions: versions_digest(&pairs),
    })
}

fn versions_digest(pairs: &[(String, String)]) -> Digest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for (id, version) in pairs {
        for field in [id, version] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
    }
    hasher.finalize().into()
}

async fn pod_statuses(api: Api<DynamicObject>, tx: mpsc::Sender<Message>) {
    let mut stream =
        std::pin::pin!(watch_stream(api, watcher::Config::default()).default_backoff());
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "reload: SecretProviderClassPodStatus watch failed; retrying");
                continue;
            }
        };
        // A status without a class name yet says nothing.
        let event = match event {
            Event::Apply(o) => pod_status(&o).map(Event::Apply),
            Event::InitApply(o) => pod_status(&o).map(Event::InitApply),
            Event::Delete(o) => Some(Event::Delete(PodStatus {
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
                class: String::new(),
                versions: [0; 32],
            })),
            Event::Init => Some(Event::Init),
            Event::InitDone => Some(Event::InitDone),
        };
        let Some(event) = event else { continue };
        if tx.send(Message::PodStatus(event)).await.is_err() {
            return;
        }
    }
}

/// The cluster's objects of a kind, or one namespace's.
fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

async fn objects<K>(api: Api<PartialObjectMeta<K>>, kind: ObjKind, tx: mpsc::Sender<Message>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    objects_of(api, kind, tx).await
}

/// Any kind's metadata, reduced at once to a key and an [`ObjMeta`].
async fn objects_of<K>(api: Api<PartialObjectMeta<K>>, kind: ObjKind, tx: mpsc::Sender<Message>)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Clone + Send + Sync,
{
    let mut stream =
        std::pin::pin!(watch_stream(api, watcher::Config::default()).default_backoff());
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "reload: watch failed; retrying");
                continue;
            }
        };
        let event = map(event, |object| {
            let metadata = object.metadata;
            let key = ObjKey::new(
                metadata.namespace.as_deref().unwrap_or_default(),
                kind,
                metadata.name.as_deref().unwrap_or_default(),
            );
            let (ignore, match_) = object_flags(metadata.annotations.as_ref());
            let meta = ObjMeta {
                resource_version: metadata.resource_version.unwrap_or_default(),
                ignore,
                match_,
            };
            (key, meta)
        });
        if tx.send(Message::Object(kind, event)).await.is_err() {
            return;
        }
    }
}

fn workload_key(kind: WorkloadKind, metadata: &ObjectMeta) -> WorkloadKey {
    WorkloadKey {
        kind,
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
    }
}

async fn typed_workloads<K>(
    api: Api<K>,
    kind: WorkloadKind,
    template: fn(&K) -> Option<&PodTemplateSpec>,
    tx: mpsc::Sender<Message>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = watch_stream(api, watcher::Config::default()).default_backoff();
    forward(stream, kind, tx, |object: K| {
        let key = workload_key(kind, object.meta());
        let info = workload::derive(kind, object.meta(), Ok(template(&object)));
        (key, info.map(Box::new))
    })
    .await;
}

async fn forward<K>(
    stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>>,
    kind: WorkloadKind,
    tx: mpsc::Sender<Message>,
    mut reduce: impl FnMut(K) -> (WorkloadKey, Option<Box<WorkloadInfo>>),
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "reload: watch failed; retrying");
                continue;
            }
        };
        if tx
            .send(Message::Workload(kind, map(event, &mut reduce)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Argo Rollouts, from the moment their API is served.
async fn rollouts(client: kube::Client, namespace: Option<String>, tx: mpsc::Sender<Message>) {
    let kind = WorkloadKind::Rollout;
    let resource = kind.api_resource();
    if !served(&client, &resource, &tx).await {
        return;
    }
    tracing::info!("reload: Argo Rollouts are served; watching them");
    let api: Api<DynamicObject> = match &namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    };
    let stream = watch_stream(api, watcher::Config::default()).default_backoff();
    forward(stream, kind, tx, |object: DynamicObject| {
        let key = workload_key(kind, &object.metadata);
        let template = workload::rollout_template(&object.data["spec"]);
        let info = workload::derive(
            kind,
            &object.metadata,
            template.as_ref().map(Option::as_ref).map_err(Clone::clone),
        );
        (key, info.map(Box::new))
    })
    .await;
}
