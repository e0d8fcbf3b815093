//! The objects the controller watches, decoded leniently: an object whose spec
//! does not decode (a tenant's typo, a field from a newer version, a value the
//! schema let through) still arrives, carrying why, so it fails alone with a
//! status that names the field, and never stops the list or the watch for
//! every other object. Caches hold no managedFields and no
//! `last-applied-configuration` (a second copy of the whole object), and keep
//! labels and annotations as text.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::{ApiResource, DynamicResourceScope, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::api::{
    BitnamiSealedSecret, BitnamiSealedSecretSpec, BitnamiSealedSecretStatus,
    ClusterExternalSecretSpec, ClusterExternalSecretStatus, ClusterPushSecretSpec,
    ClusterPushSecretStatus, ClusterSecretStoreSpec, ExternalSecret, ExternalSecretSpec,
    ExternalSecretStatus, PushSecret, PushSecretSpec, PushSecretStatus, SealedSecret,
    SealedSecretSpec, SealedSecretStatus, SecretStoreSpec, SecretStoreStatus,
};

/// An object as watched: its metadata always, its spec if it decodes.
///
/// Spec and status are kept as their JSON text and decoded where they are
/// read: the cache holds one of these per object, and a decoded spec is a
/// tree of 20-odd allocations (a status half that) where the text is one,
/// which at 10,000 ExternalSecrets is megabytes. Decoding a spec again costs
/// microseconds, once per reconcile.
#[derive(Clone, Debug)]
pub struct Watched<S, T> {
    /// Which API it was served by: tells secretsync's objects from ESO's.
    pub flavor: Flavor,
    /// Without labels and annotations: see [`Watched::full_metadata`].
    pub metadata: ObjectMeta,
    /// The labels and annotations as one JSON text (`None` when it has
    /// neither). As maps, each would take a B-tree node of half a kilobyte
    /// or more in every cached object (Helm and Argo CD label everything);
    /// only a reconcile's copy of the object, and a hash, need them.
    labels_and_annotations: Option<Packed>,
    /// The spec's text, or why it does not decode (field path and message, no value).
    spec: Result<Kept<S>, Box<str>>,
    /// The status's text, if it decodes (one that does not is rewritten).
    status: Option<Kept<T>>,
}

/// A value kept as the JSON text it decoded from.
struct Kept<T> {
    json: Packed,
    decodes_to: PhantomData<fn() -> T>,
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Self {
            json: self.json.clone(),
            decodes_to: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Kept<T> {
    // Specs hold no secret values, but nothing here needs their text either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kept({} bytes packed)", self.json.0.len())
    }
}

impl<T: DeserializeOwned> Kept<T> {
    /// Keeps `value` if it decodes as a `T` (with `decode`'s message if not).
    fn of(
        value: serde_json::Value,
        decode: impl FnOnce(serde_json::Value) -> Result<T, String>,
    ) -> Result<Self, String> {
        let json = Packed::new(&value.to_string());
        decode(value)?;
        Ok(Self {
            json,
            decodes_to: PhantomData,
        })
    }

    /// Decodes again what decoded once; should that ever fail, says so.
    fn get(&self) -> Result<T, String> {
        let text = self
            .json
            .text()
            .map_err(|e| format!("decoding again: {e}"))?;
        serde_json::from_slice(&text).map_err(|e| format!("decoding again: {e}"))
    }
}

/// JSON text, LZ4-compressed against [`DICTIONARY`]. A cached
/// ExternalSecret's spec and status are 800-odd bytes of text, most of it
/// field names and defaults that every ExternalSecret repeats; packed, they
/// take about a fifth of that (100,000 ExternalSecrets: about 60 MiB less),
/// for a few microseconds per decode.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

impl Packed {
    fn new(text: &str) -> Self {
        let packed = lz4_flex::block::compress_prepend_size_with_dict(text.as_bytes(), DICTIONARY);
        Self(packed.into_boxed_slice())
    }

    /// The text's bytes (only ever this process's own packing).
    fn text(&self) -> Result<Vec<u8>, String> {
        lz4_flex::block::decompress_size_prepended_with_dict(&self.0, DICTIONARY)
            .map_err(|e| e.to_string())
    }
}

/// What packed texts are compressed against: the field names, defaults and
/// messages that specs, statuses, labels and annotations repeat. Compression
/// matches against it as if it came before each text; it never changes
/// while a process runs (nothing packed outlives the process).
const DICTIONARY: &[u8] = concat!(
    r#"{"app.kubernetes.io/component":"","app.kubernetes.io/instance":"","app.kubernetes.io/managed-by":"Helm","#,
    r#""app.kubernetes.io/name":"","app.kubernetes.io/part-of":"","app.kubernetes.io/version":"","helm.sh/chart":""},"#,
    r#"{"argocd.argoproj.io/sync-wave":"","argocd.argoproj.io/tracking-id":"","meta.helm.sh/release-name":"","#,
    r#""meta.helm.sh/release-namespace":"","secretsync.io/force-sync":"","force-sync":""}"#,
    r#"{"provider":{"aws":{"auth":{"jwt":{"serviceAccountRef":{"name":"","namespace":""}},"secretRef":{"#,
    r#""accessKeyIDSecretRef":{"key":"","name":""}}},"region":"us-east-1","role":"arn:aws:iam::","#,
    r#""service":"ParameterStore"}}},"refreshInterval":0,"conditions":[{"type":"Ready","status":"True","#,
    r#""reason":"Valid","message":"store validated"}],"capabilities":"ReadWrite"}"#,
    r#"{"data":[{"remoteRef":{"conversionStrategy":"Default","decodingStrategy":"None","key":"","#,
    r#""metadataPolicy":"None","property":"","version":""},"secretKey":""}],"dataFrom":[{"extract":{"#,
    r#""conversionStrategy":"Default","decodingStrategy":"Base64","key":"","metadataPolicy":"Fetch"}},"#,
    r#"{"find":{"conversionStrategy":"Default","decodingStrategy":"Auto","name":{"regexp":""},"path":"","#,
    r#""tags":{}},"rewrite":[{"regexp":{"source":"","target":""}}]},{"sourceRef":{"generatorRef":{"#,
    r#""apiVersion":"generators.secretsync.io/v1alpha1","kind":"Password","name":""}}}],"#,
    r#""refreshInterval":"1h","refreshPolicy":"Periodic","secretStoreRef":{"kind":"ClusterSecretStore","#,
    r#""name":""},"target":{"creationPolicy":"Owner","deletionPolicy":"Retain","immutable":false,"#,
    r#""name":"","template":{"data":{},"engineVersion":"v2","mergePolicy":"Replace","metadata":{"#,
    r#""annotations":{},"labels":{}},"templateFrom":[{"configMap":{"items":[{"key":"","#,
    r#""templateAs":"Values"}],"name":""},"target":"Data"}],"type":"Opaque"}}}"#,
    r#"{"binding":{"name":""},"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","#,
    r#""message":"Secret is synced","reason":"SecretSynced","status":"True","type":"Ready"}],"#,
    r#""contentHash":"","observedGeneration":1,"refreshTime":"2026-","specHash":"","#,
    r#""syncedResourceVersion":""}"#,
)
.as_bytes();

pub type WatchedExternalSecret = Watched<ExternalSecretSpec, ExternalSecretStatus>;
pub type WatchedSecretStore = Watched<SecretStoreSpec, SecretStoreStatus>;
pub type WatchedClusterSecretStore = Watched<ClusterSecretStoreSpec, SecretStoreStatus>;
pub type WatchedClusterExternalSecret =
    Watched<ClusterExternalSecretSpec, ClusterExternalSecretStatus>;
pub type WatchedSealedSecret = Watched<SealedSecretSpec, SealedSecretStatus>;
/// Bitnami's SealedSecret (`--bitnami-compat`); its flavor is always secretsync's.
pub type WatchedBitnamiSealedSecret = Watched<BitnamiSealedSecretSpec, BitnamiSealedSecretStatus>;
pub type WatchedPushSecret = Watched<PushSecretSpec, PushSecretStatus>;
pub type WatchedClusterPushSecret = Watched<ClusterPushSecretSpec, ClusterPushSecretStatus>;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl<'de, S: DeserializeOwned, T: DeserializeOwned> Deserialize<'de> for Watched<S, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, rename = "apiVersion")]
            api_version: String,
            #[serde(default)]
            metadata: LeanMeta,
            #[serde(default)]
            spec: Option<serde_json::Value>,
            #[serde(default)]
            status: Option<serde_json::Value>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let mut metadata = ObjectMeta::from(raw.metadata);
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
        let labels_and_annotations = match (&metadata.labels, &metadata.annotations) {
            (None, None) => None,
            maps => serde_json::to_string(&maps)
                .ok()
                .map(|text| Packed::new(&text)),
        };
        if labels_and_annotations.is_some() {
            metadata.labels = None;
            metadata.annotations = None;
        }
        let spec = match raw.spec {
            Some(spec) => Kept::of(spec, checked).map_err(|e| in_spec(&e).into()),
            None => Err("spec: is required".into()),
        };
        let status = raw.status.and_then(|s| {
            Kept::of(s, |s| serde_json::from_value(s).map_err(|e| e.to_string())).ok()
        });
        Ok(Watched {
            flavor: Flavor::of(&raw.api_version),
            metadata,
            labels_and_annotations,
            spec,
            status,
        })
    }
}

impl<S: DeserializeOwned + Send + Sync + 'static, T> Watched<S, T> {
    /// The spec, decoded once for every reader of the same text: what a
    /// store's spec is. Every sync of every ExternalSecret reads its store's
    /// spec (two or three times over: its identity, its provider), and a
    /// fleet shares a handful of stores, so a fleet's first sync decoded the
    /// same few specs hundreds of thousands of times.
    pub fn shared_spec(&self) -> Result<std::sync::Arc<S>, String> {
        use std::any::{Any, TypeId};
        use std::collections::HashMap;
        use std::sync::{Arc, LazyLock, Mutex};
        type Memo = HashMap<(TypeId, Box<[u8]>), Arc<dyn Any + Send + Sync>>;
        /// Specs change rarely; a cluster with more distinct store specs
        /// than this starts over, which costs only decodes.
        const MOST: usize = 4096;
        static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Default::default);
        let kept = match &self.spec {
            Ok(kept) => kept,
            Err(why) => return Err(why.to_string()),
        };
        // The same text always packs to the same bytes.
        let key = (TypeId::of::<S>(), kept.json.0.clone());
        let found = MEMO
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(spec) = found.and_then(|any| any.downcast::<S>().ok()) {
            return Ok(spec);
        }
        let spec = Arc::new(kept.get().map_err(|e| in_spec(&e))?);
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MOST {
            memo.clear();
        }
        memo.insert(key, spec.clone());
        Ok(spec)
    }
}

/// Whether a spec decodes, with the field path of the error when not (the
/// path-tracking decoder only then: it doubled the cost of the check every
/// watch event of an ExternalSecret pays).
fn checked<S: DeserializeOwned>(value: serde_json::Value) -> Result<S, String> {
    match S::deserialize(&value) {
        Ok(spec) => Ok(spec),
        Err(_) => crate::api::from_json(value),
    }
}

/// `ObjectMeta` as the watch sends it, but for `managedFields`, which is
/// skipped over unread: every event of an ExternalSecret carries its
/// managers' field sets, decoded into entries only to be dropped (a
/// quarter of the cost of reading the event).
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(lean: LeanMeta) -> Self {
        ObjectMeta {
            annotations: lean.annotations,
            creation_timestamp: lean.creation_timestamp,
            deletion_grace_period_seconds: lean.deletion_grace_period_seconds,
            deletion_timestamp: lean.deletion_timestamp,
            finalizers: lean.finalizers,
            generate_name: lean.generate_name,
            generation: lean.generation,
            labels: lean.labels,
            managed_fields: None,
            name: lean.name,
            namespace: lean.namespace,
            owner_references: lean.owner_references,
            resource_version: lean.resource_version,
            self_link: lean.self_link,
            uid: lean.uid,
        }
    }
}

impl<S: DeserializeOwned, T: DeserializeOwned> Watched<S, T> {
    /// The spec, decoded; or why it does not decode.
    pub fn spec(&self) -> Result<S, String> {
        decoded_spec(&self.spec)
    }

    /// The status, decoded, if there is one that decodes.
    pub fn status(&self) -> Option<T> {
        self.status.as_ref().and_then(|status| status.get().ok())
    }
}

/// An object's labels and annotations.
pub type LabelsAndAnnotations = (
    Option<BTreeMap<String, String>>,
    Option<BTreeMap<String, String>>,
);

impl<S, T> Watched<S, T> {
    /// Its labels and annotations, decoded.
    pub fn labels_and_annotations(&self) -> LabelsAndAnnotations {
        unpacked_maps(self.labels_and_annotations.as_ref())
    }

    /// A fingerprint of what a spec hash is computed from: the spec's text,
    /// labels and annotations.
    pub fn spec_source(&self) -> u64 {
        source_of(&self.spec, self.labels_and_annotations.as_ref())
    }

    /// Its metadata with labels and annotations.
    pub fn full_metadata(&self) -> ObjectMeta {
        let mut metadata = self.metadata.clone();
        (metadata.labels, metadata.annotations) = self.labels_and_annotations();
        metadata
    }
}

fn decoded_spec<S: DeserializeOwned>(spec: &Result<Kept<S>, Box<str>>) -> Result<S, String> {
    match spec {
        Ok(spec) => spec.get().map_err(|e| in_spec(&e)),
        Err(why) => Err(why.to_string()),
    }
}

fn unpacked_maps(packed: Option<&Packed>) -> LabelsAndAnnotations {
    packed
        .and_then(|packed| packed.text().ok())
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default()
}

/// Keyed afresh in each process, so no tenant can craft a spec that
/// collides with another.
fn source_of<S>(spec: &Result<Kept<S>, Box<str>>, labels_and_annotations: Option<&Packed>) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::LazyLock<std::hash::RandomState> =
        std::sync::LazyLock::new(std::hash::RandomState::new);
    // The same text always packs to the same bytes.
    let spec = spec.as_ref().map(|kept| &kept.json);
    KEYS.hash_one((spec.ok(), labels_and_annotations))
}

/// An object as a cache of our own keeps it between events: the
/// [`Watched`] form less what the cache's key already says (name and
/// namespace) and less the `ObjectMeta` struct, which is half a kilobyte
/// inline even when nearly empty. What a controller reads of every object
/// (uid, generation, creation time) stays as it is; what few objects have
/// (owner references, finalizers, a deletion time) is packed.
#[derive(Clone, Debug)]
pub struct Cached<S, T> {
    pub flavor: Flavor,
    uid: Option<Box<str>>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    /// Every other metadata field there is, packed; `None` when there is none.
    rest: Option<Packed>,
    labels_and_annotations: Option<Packed>,
    spec: Result<Kept<S>, Box<str>>,
    status: Option<Kept<T>>,
}

impl<S, T> Watched<S, T> {
    /// The cache's form of this object (its name and namespace go into the
    /// cache's key).
    pub fn into_cached(self) -> Cached<S, T> {
        let Watched {
            flavor,
            mut metadata,
            labels_and_annotations,
            spec,
            status,
        } = self;
        let uid = metadata.uid.take().map(String::into_boxed_str);
        let generation = metadata.generation.take();
        let creation_timestamp = metadata.creation_timestamp.take();
        metadata.name = None;
        metadata.namespace = None;
        metadata.resource_version = None;
        metadata.managed_fields = None;
        let rest = (metadata != ObjectMeta::default())
            .then(|| serde_json::to_string(&metadata).ok())
            .flatten()
            .map(|text| Packed::new(&text));
        Cached {
            flavor,
            uid,
            generation,
            creation_timestamp,
            rest,
            labels_and_annotations,
            spec,
            status,
        }
    }
}

impl<S, T> Cached<S, T> {
    /// The object as watched again, named `name` in `namespace`.
    pub fn watched(&self, namespace: &str, name: &str) -> Watched<S, T> {
        let mut metadata = self.rest_of_metadata();
        metadata.name = Some(name.to_string());
        metadata.namespace = Some(namespace.to_string());
        metadata.uid = self.uid.as_deref().map(str::to_string);
        metadata.generation = self.generation;
        metadata.creation_timestamp = self.creation_timestamp.clone();
        Watched {
            flavor: self.flavor,
            metadata,
            labels_and_annotations: self.labels_and_annotations.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
        }
    }

    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Whether it has metadata beyond name, uid, generation, creation time,
    /// labels and annotations (owner references, finalizers, ...).
    pub fn has_rest_of_metadata(&self) -> bool {
        self.rest.is_some()
    }

    pub fn labels_and_annotations(&self) -> LabelsAndAnnotations {
        unpacked_maps(self.labels_and_annotations.as_ref())
    }

    /// See [`Watched::spec_source`].
    pub fn spec_source(&self) -> u64 {
        source_of(&self.spec, self.labels_and_annotations.as_ref())
    }

    /// Its owner references (unpacked only for objects that have a packed
    /// rest of metadata at all).
    pub fn owner_references(&self) -> Vec<OwnerReference> {
        self.rest_of_metadata().owner_references.unwrap_or_default()
    }

    fn rest_of_metadata(&self) -> ObjectMeta {
        self.rest
            .as_ref()
            .and_then(|packed| packed.text().ok())
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }
}

impl<S: DeserializeOwned, T: DeserializeOwned> Cached<S, T> {
    /// The spec, decoded; or why it does not decode.
    pub fn spec(&self) -> Result<S, String> {
        decoded_spec(&self.spec)
    }

    /// The status, decoded, if there is one that decodes.
    pub fn status(&self) -> Option<T> {
        self.status.as_ref().and_then(|status| status.get().ok())
    }
}

/// `data[0].secretKey: ...` -> `spec.data[0].secretKey: ...`; a message with
/// no field path -> `spec: ...`.
fn in_spec(error: &str) -> String {
    let has_path = error
        .split_once(": ")
        .is_some_and(|(path, _)| !path.is_empty() && !path.contains(' '));
    if has_path {
        format!("spec.{error}")
    } else {
        format!("spec: {error}")
    }
}

/// The kind and plural each watched spec is served under.
pub trait Kind {
    const KIND: &'static str;
    const PLURAL: &'static str;
    /// The version served, the same in both flavors' groups.
    const VERSION: &'static str = "v1";
    /// A group of its own, whatever the flavor (Bitnami's SealedSecret).
    const GROUP: Option<&'static str> = None;
}

impl Kind for ExternalSecretSpec {
    const KIND: &'static str = "ExternalSecret";
    const PLURAL: &'static str = "externalsecrets";
}

impl Kind for SecretStoreSpec {
    const KIND: &'static str = "SecretStore";
    const PLURAL: &'static str = "secretstores";
}

impl Kind for ClusterSecretStoreSpec {
    const KIND: &'static str = "ClusterSecretStore";
    const PLURAL: &'static str = "clustersecretstores";
}

impl Kind for ClusterExternalSecretSpec {
    const KIND: &'static str = "ClusterExternalSecret";
    const PLURAL: &'static str = "clusterexternalsecrets";
}

impl Kind for PushSecretSpec {
    const KIND: &'static str = "PushSecret";
    const PLURAL: &'static str = "pushsecrets";
    const VERSION: &'static str = crate::api::PUSH_VERSION;
}

impl Kind for ClusterPushSecretSpec {
    const KIND: &'static str = "ClusterPushSecret";
    const PLURAL: &'static str = "clusterpushsecrets";
    const VERSION: &'static str = crate::api::PUSH_VERSION;
}

impl Kind for SealedSecretSpec {
    const KIND: &'static str = "SealedSecret";
    const PLURAL: &'static str = "sealedsecrets";
}

impl Kind for BitnamiSealedSecretSpec {
    const KIND: &'static str = "SealedSecret";
    const PLURAL: &'static str = "sealedsecrets";
    const VERSION: &'static str = crate::api::BITNAMI_VERSION;
    const GROUP: Option<&'static str> = Some(crate::api::BITNAMI_GROUP);
}

/// The dynamic type is the flavor (two static strings): every cache key and
/// every queued reconcile carries one, thousands of times over.
impl<S, T> Resource for Watched<S, T>
where
    S: Kind + 'static,
    T: 'static,
{
    type DynamicType = Flavor;
    type Scope = DynamicResourceScope;

    fn kind(_: &Flavor) -> Cow<'_, str> {
        S::KIND.into()
    }

    fn group(flavor: &Flavor) -> Cow<'_, str> {
        S::GROUP.unwrap_or(flavor.group()).into()
    }

    fn version(_: &Flavor) -> Cow<'_, str> {
        S::VERSION.into()
    }

    fn api_version(flavor: &Flavor) -> Cow<'_, str> {
        format!("{}/{}", S::GROUP.unwrap_or(flavor.group()), S::VERSION).into()
    }

    fn plural(_: &Flavor) -> Cow<'_, str> {
        S::PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WatchedExternalSecret {
    /// The typed ExternalSecret, when its spec decodes.
    pub fn typed(&self) -> Result<ExternalSecret, String> {
        Ok(ExternalSecret {
            metadata: self.full_metadata(),
            spec: self.spec()?,
            status: self.status(),
        })
    }
}

impl WatchedPushSecret {
    /// The typed PushSecret, when its spec decodes.
    pub fn typed(&self) -> Result<PushSecret, String> {
        Ok(PushSecret {
            metadata: self.full_metadata(),
            spec: self.spec()?,
            status: self.status(),
        })
    }
}

impl WatchedBitnamiSealedSecret {
    /// The typed SealedSecret, when its spec decodes.
    pub fn typed(&self) -> Result<BitnamiSealedSecret, String> {
        Ok(BitnamiSealedSecret {
            metadata: self.full_metadata(),
            spec: self.spec()?,
            status: self.status(),
        })
    }
}

impl WatchedSealedSecret {
    /// The typed SealedSecret, when its spec decodes.
    pub fn typed(&self) -> Result<SealedSecret, String> {
        Ok(SealedSecret {
            metadata: self.full_metadata(),
            spec: self.spec()?,
            status: self.status(),
        })
    }
}

/// Which API an object comes from: secretsync's own, or ESO's
/// (`--eso-compat`). Same fields, same sync; status, events and owner
/// references point at the object in its own group. One byte: every cache
/// key and queued reconcile carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    SecretSync,
    Eso,
}

pub const SECRETSYNC: Flavor = Flavor::SecretSync;
pub const ESO: Flavor = Flavor::Eso;

impl Flavor {
    pub fn group(self) -> &'static str {
        match self {
            Flavor::SecretSync => crate::api::GROUP,
            Flavor::Eso => crate::api::ESO_GROUP,
        }
    }

    pub fn version(self) -> &'static str {
        "v1"
    }

    /// The flavor of an object, by the group of its `apiVersion`.
    pub fn of(api_version: &str) -> Flavor {
        match api_version.split_once('/') {
            Some((group, _)) if group == ESO.group() => ESO,
            _ => SECRETSYNC,
        }
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    pub fn resource(&self, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), self.version(), kind),
            plural,
        )
    }

    // The kinds of this flavor, for untyped requests (status patches).

    pub fn external_secrets(&self) -> ApiResource {
        self.resource(ExternalSecretSpec::KIND, ExternalSecretSpec::PLURAL)
    }

    pub fn secret_stores(&self) -> ApiResource {
        self.resource(SecretStoreSpec::KIND, SecretStoreSpec::PLURAL)
    }

    pub fn cluster_external_secrets(&self) -> ApiResource {
        self.resource(
            ClusterExternalSecretSpec::KIND,
            ClusterExternalSecretSpec::PLURAL,
        )
    }

    pub fn push_secrets(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), PushSecretSpec::VERSION, PushSecretSpec::KIND),
            PushSecretSpec::PLURAL,
        )
    }

    pub fn cluster_push_secrets(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                self.group(),
                ClusterPushSecretSpec::VERSION,
                ClusterPushSecretSpec::KIND,
            ),
            ClusterPushSecretSpec::PLURAL,
        )
    }

    pub fn cluster_secret_stores(&self) -> ApiResource {
        self.resource(ClusterSecretStoreSpec::KIND, ClusterSecretStoreSpec::PLURAL)
    }

    /// ESO stores are told apart from secretsync's of the same name, so they
    /// never share a provider or a batch.
    pub fn store_name(&self, name: &str) -> String {
        if *self == SECRETSYNC {
            name.to_string()
        } else {
            format!("{name}.{}", self.group())
        }
    }
}

/// `namespace/name` of an object, for logs and in-memory records.
pub fn key_of(object: &impl Resource) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// `group/namespace/name`: unique across both flavors.
pub fn flavored_key(flavor: Flavor, object: &impl ResourceExt) -> String {
    let meta = object.meta();
    flavored_key_of(
        flavor,
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The [`flavored_key`] of the object of this flavor, namespace and name.
pub fn flavored_key_of(flavor: Flavor, namespace: Option<&str>, name: &str) -> String {
    format!(
        "{}/{}/{name}",
        flavor.group(),
        namespace.unwrap_or_default()
    )
}

/// The flavor, namespace and name a [`flavored_key`] was made of.
pub fn parts_of_key(key: &str) -> Option<(Flavor, &str, &str)> {
    let mut parts = key.splitn(3, '/');
    let group = parts.next()?;
    let namespace = parts.next()?;
    let name = parts.next()?;
    let flavor = [SECRETSYNC, ESO].into_iter().find(|f| f.group() == group)?;
    Some((flavor, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_text_reads_back_whole_and_takes_a_fraction_of_the_room() {
        // A three-key ExternalSecret as the API server defaults it, and the
        // status this controller writes for it.
        let spec = r#"{"data":[{"remoteRef":{"decodingStrategy":"None","key":"bench/sm/0042","property":"password"},"secretKey":"password"},{"remoteRef":{"decodingStrategy":"None","key":"bench/sm/0042","property":"username"},"secretKey":"username"},{"remoteRef":{"decodingStrategy":"None","key":"bench/ssm/0107"},"secretKey":"p7"}],"refreshInterval":"3600s","refreshPolicy":"Periodic","secretStoreRef":{"kind":"ClusterSecretStore","name":"aws-sm"},"target":{"creationPolicy":"Owner","deletionPolicy":"Retain","name":"es-00042"}}"#;
        let status = r#"{"conditions":[{"lastTransitionTime":"2026-12-06T22:40:20Z","message":"Secret is synced","reason":"SecretSynced","status":"True","type":"Ready"}],"contentHash":"9f2c1e0b7a6d5c4b","observedGeneration":1,"refreshTime":"2026-12-06T22:40:20Z","specHash":"0123456789abcdef0123456789abcdef","syncedResourceVersion":"1843"}"#;
        for text in [
            spec,
            status,
            "",
            "{}",
            "not json at all, and not in the dictionary",
        ] {
            let packed = Packed::new(text);
            assert_eq!(packed.text().unwrap(), text.as_bytes());
            assert_eq!(packed, Packed::new(text), "the same text packs the same");
        }
        let (spec_packed, status_packed) = (Packed::new(spec).0.len(), Packed::new(status).0.len());
        assert!(
            spec_packed * 3 < spec.len(),
            "{spec_packed} of {}",
            spec.len()
        );
        assert!(
            status_packed * 2 < status.len(),
            "{status_packed} of {}",
            status.len()
        );
        assert!(Packed::new(&spec.replace("0042", "0043")) != Packed::new(spec));
    }

    #[test]
    fn a_spec_that_does_not_decode_arrives_with_why() {
        let object: WatchedExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "secretsync.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "bad", "namespace": "team",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{...}", "keep": "me"}},
            "spec": {"refreshInterval": 42, "secretStoreRef": {"name": "s"}},
            "status": {"refreshTime": "not a time"},
        }))
        .unwrap();
        let error = object.spec().unwrap_err();
        assert!(error.starts_with("spec.refreshInterval: "), "{error}");
        assert!(!error.contains("42"), "{error}");
        assert!(object.status().is_none());
        assert!(object.metadata.managed_fields.is_none());
        let annotations = object.full_metadata().annotations.unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["keep"]);
        assert_eq!(object.metadata.annotations, None, "kept as text");

        let good: WatchedExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "metadata": {"name": "good", "namespace": "team"},
            "spec": {"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]},
        }))
        .unwrap();
        assert_eq!(good.typed().unwrap().spec.data.len(), 1);
        assert_eq!(good.flavor, ESO);
        assert_eq!(good.labels_and_annotations(), (None, None));
        assert_eq!(good.full_metadata(), good.metadata);
        let labelled: WatchedExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "secretsync.io/v1",
            "metadata": {"name": "l", "namespace": "team", "labels": {"app": "web", "tier": "db"}},
            "spec": {"secretStoreRef": {"name": "s"}},
        }))
        .unwrap();
        assert_eq!(labelled.metadata.labels, None, "kept as text");
        let typed = labelled.typed().unwrap();
        assert_eq!(
            typed.metadata.labels,
            Some([("app".into(), "web".into()), ("tier".into(), "db".into())].into())
        );
        assert_eq!(typed.metadata.annotations, None);
        // Kept as text, read back whole, as often as asked.
        let again = |w: &WatchedExternalSecret| serde_json::to_value(w.spec().unwrap()).unwrap();
        assert_eq!(again(&good), again(&good));
        let synced: WatchedExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "secretsync.io/v1",
            "metadata": {"name": "synced", "namespace": "team"},
            "spec": {"secretStoreRef": {"name": "s"}, "refreshInterval": "5m"},
            "status": {"refreshTime": "2026-12-03T08:00:00Z", "specHash": "abc",
                "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]},
        }))
        .unwrap();
        assert_eq!(synced.flavor, SECRETSYNC);
        let status = synced.status().unwrap();
        assert_eq!(status.spec_hash.as_deref(), Some("abc"));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(
            flavored_key_of(SECRETSYNC, Some("team"), "synced"),
            flavored_key(SECRETSYNC, &synced)
        );
        assert_eq!(
            parts_of_key(&flavored_key(synced.flavor, &synced)),
            Some((SECRETSYNC, "team", "synced"))
        );
        assert_eq!(
            parts_of_key("external-secrets.io/team/good"),
            Some((ESO, "team", "good"))
        );
        assert_eq!(parts_of_key("x.io/a/b"), None);
        assert_eq!(parts_of_key("team/b"), None);
        let none: WatchedExternalSecret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(none.spec().unwrap_err(), "spec: is required");
    }

    #[test]
    fn the_spec_source_changes_with_spec_labels_and_annotations_not_status() {
        let es = |spec: serde_json::Value, labels: serde_json::Value, status: &str| {
            let object: WatchedExternalSecret = serde_json::from_value(serde_json::json!({
                "apiVersion": "secretsync.io/v1",
                "metadata": {"name": "a", "namespace": "team", "labels": labels},
                "spec": spec,
                "status": {"refreshTime": status},
            }))
            .unwrap();
            object.spec_source()
        };
        let spec = serde_json::json!({"secretStoreRef": {"name": "s"}});
        let other = serde_json::json!({"secretStoreRef": {"name": "t"}});
        let app = serde_json::json!({"app": "web"});
        let first = es(spec.clone(), app.clone(), "2026-01-01T00:00:00Z");
        assert_eq!(first, es(spec.clone(), app.clone(), "2026-01-01T01:00:00Z"));
        assert_ne!(first, es(other, app.clone(), "2026-01-01T00:00:00Z"));
        let db = serde_json::json!({"app": "db"});
        assert_ne!(first, es(spec, db, "2026-01-01T00:00:00Z"));
    }
}
