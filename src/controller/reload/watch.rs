//! The watches, each turning what it sees into a small message at once:
//! Secrets and ConfigMaps metadata-only (every one in the cluster, including
//! those secretsync does not manage: their data is never sent), and
//! Deployments, StatefulSets, DaemonSets and, once their CRD is served, Argo
//! Rollouts, reduced to what [`workload::derive`] keeps.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::annotations::object_flags;
use super::tracker::ObjMeta;
use super::workload::{self, WorkloadInfo, WorkloadKey, WorkloadKind};
use super::{ObjKey, ObjKind};

pub enum Message {
    Object(ObjKind, Event<(ObjKey, ObjMeta)>),
    Workload(
        WorkloadKind,
        Event<(WorkloadKey, Option<Box<WorkloadInfo>>)>,
    ),
}

/// How often to look again for the Argo Rollouts API when it is not served.
const ROLLOUTS_RECHECK: Duration = Duration::from_secs(60);

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
        tokio::spawn(rollouts(client, namespace.map(str::to_string), tx)),
    ]
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
    loop {
        let served = client
            .list_api_group_resources(&resource.api_version)
            .await
            .is_ok_and(|list| list.resources.iter().any(|r| r.name == resource.plural));
        if served {
            break;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(ROLLOUTS_RECHECK).await;
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
