//! A stateful in-process Kubernetes API server for tests: enough of the real
//! one, following the API conventions, for secretsync's controller, the kube
//! client and kubectl. Started on 127.0.0.1 on a free port; stopped on drop.
//!
//! Where a behaviour is simplified against the real server, the module doing
//! it says how. Not part of the shipped binary.

#![allow(dead_code)] // each test binary uses its own share of this

mod audit;
mod discovery;
mod events;
mod faults;
mod fields;
mod gc;
pub mod openapi_v2;
mod patch;
pub mod protobuf;
mod resources;
mod schema;
mod selectors;
pub mod stats;
mod storage;
mod typed;
mod watch;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

pub use audit::Request;
pub use faults::Faults;
use resources::{Target, parse_path, status};
use selectors::{FieldSelector, LabelSelector};
use storage::{ApiError, State, WriteOptions};

/// The server. Its state is shared with the request handlers.
pub struct FakeApiServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    faults: Arc<Faults>,
    stats: Arc<stats::Stats>,
    audit: Arc<audit::Audit>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<State>>,
    faults: Arc<Faults>,
    audit: Arc<audit::Audit>,
    address: String,
}

/// How many changes a watch can resume from before it gets 410 Gone.
pub const DEFAULT_HISTORY: usize = 10_000;

impl FakeApiServer {
    pub async fn start() -> FakeApiServer {
        Self::start_with_history(DEFAULT_HISTORY).await
    }

    /// A server that keeps only the last `history` changes for watches.
    pub async fn start_with_history(history: usize) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::new(history)));
        let faults = Arc::new(Faults::default());
        let audit = Arc::new(audit::Audit::default());
        let app = App {
            state: state.clone(),
            faults: faults.clone(),
            audit: audit.clone(),
            address: address.clone(),
        };
        let router = Router::new().fallback(handle).with_state(app);
        let stats = Arc::new(stats::Stats::default());
        let listener = stats::CountingListener::new(listener, stats.clone());
        let service = stats::counted(router, stats.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeApiServer {
            url: format!("http://{address}"),
            state,
            faults,
            stats,
            audit,
            shutdown: Some(shutdown),
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Requests and connections counted so far, for benchmarks.
    pub fn stats(&self) -> &stats::Stats {
        &self.stats
    }

    /// Every resource request served so far, as RBAC sees it.
    pub fn requests(&self) -> Vec<Request> {
        self.audit.requests()
    }

    /// The current resourceVersion (etcd's revision).
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().resource_version
    }

    /// A kubeconfig for this server, for kubectl and kube clients.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("a URL"));
        kube::Client::try_from(config).expect("a kube client")
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn json_response(code: u16, value: &impl serde::Serialize) -> Response {
    let mut response = (
        StatusCode::from_u16(code).unwrap(),
        serde_json::to_vec(value).unwrap(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

fn error_response(error: ApiError) -> Response {
    json_response(error.code, &error.body)
}

async fn handle(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    match app.faults.take(method.as_str(), &path) {
        Some(faults::Action::Fail(code)) => {
            let reason = match code {
                409 => "Conflict",
                429 => "TooManyRequests",
                500 => "InternalError",
                503 => "ServiceUnavailable",
                _ => "InjectedFault",
            };
            return json_response(code, &status(code, reason, "injected by the test", None));
        }
        Some(faults::Action::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(faults::Action::Answer(body)) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        None => {}
    }
    if method == Method::GET
        && let Some(document) = discovery_document(&app, &path, &headers)
    {
        return document;
    }
    if let Some(value) = query.get("dryRun")
        && value != "All"
    {
        let message = format!("dryRun: Unsupported value: \"{value}\": supported values: \"All\"");
        return json_response(400, &status(400, "BadRequest", &message, None));
    }
    let dry_run = query.contains_key("dryRun");
    let target = {
        let state = app.state.lock().unwrap();
        parse_path(&state.registry, &path)
    };
    let Some(target) = target else {
        return json_response(
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ),
        );
    };
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    app.audit.record(Request {
        agent: user_agent(&headers),
        verb: audit::verb(method.as_str(), target.name.is_some(), watching).into(),
        group: target.resource.group.clone(),
        resource: match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.resource.plural),
            None => target.resource.plural.clone(),
        },
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    });
    let metadata_only = wants_metadata_only(&headers);
    let result = match (method.clone(), &target.name, target.subresource.as_deref()) {
        (Method::GET, None, _) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch(&app, &target, &query, metadata_only);
        }
        (Method::GET, None, _) => {
            return list(&app, &target, &query, &headers).unwrap_or_else(error_response);
        }
        (Method::GET, Some(name), _) => app
            .state
            .lock()
            .unwrap()
            .get(&target.resource, target.namespace.as_deref(), name)
            .map(|object| {
                // `kubectl get KIND NAME` asks for a Table too: the same
                // columns as the list's (the CRD's printer columns).
                if accepts_table(&headers) && target.subresource.is_none() {
                    let version = object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    Arc::new(discovery::table(
                        &target.resource,
                        std::slice::from_ref(&object),
                        &version,
                    ))
                } else if metadata_only {
                    Arc::new(partial_object_metadata(&object))
                } else {
                    object
                }
            }),
        (Method::POST, Some(name), Some("token")) if target.resource.kind == "ServiceAccount" => {
            token_request(&app, &target, name, &headers, &body).map(Arc::new)
        }
        (Method::POST, None, _) if target.resource.kind == "SelfSubjectAccessReview" => {
            parse_body(&headers, &body).map(|mut review| {
                let attributes = &review["spec"]["resourceAttributes"];
                let text = |k: &str| attributes[k].as_str().unwrap_or_default().to_string();
                let resource = match text("subresource").as_str() {
                    "" => text("resource"),
                    sub => format!("{}/{sub}", text("resource")),
                };
                let allowed = !app
                    .faults
                    .is_denied(&text("group"), &resource, &text("verb"));
                review["status"] = json!({"allowed": allowed});
                Arc::new(review)
            })
        }
        (Method::POST, None, _) => parse_body(&headers, &body).and_then(|object| {
            let options = write_options(&query, &headers, None);
            app.state.lock().unwrap().create(
                &target.resource,
                target.namespace.as_deref(),
                object,
                &options,
                None,
            )
        }),
        (Method::PUT, Some(name), sub) => parse_body(&headers, &body).and_then(|object| {
            let options = write_options(&query, &headers, sub);
            app.state.lock().unwrap().update(
                &target.resource,
                target.namespace.as_deref(),
                name,
                object,
                &options,
                None,
            )
        }),
        (Method::PATCH, Some(name), sub) => {
            patch(&app, &target, name, sub, &query, &headers, &body)
        }
        (Method::DELETE, Some(name), _) => {
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let policy = query
                .get("propagationPolicy")
                .cloned()
                .or_else(|| options["propagationPolicy"].as_str().map(str::to_string));
            let mut state = app.state.lock().unwrap();
            // DeleteOptions may carry the dry run too (kube's DeleteParams do).
            // Simplified: a dry-run delete shows the object, finalizers unapplied.
            if dry_run
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.contains(&json!("All")))
            {
                state.get(&target.resource, target.namespace.as_deref(), name)
            } else {
                state.delete(
                    &target.resource,
                    target.namespace.as_deref(),
                    name,
                    policy.as_deref(),
                )
            }
        }
        (Method::DELETE, None, _) => delete_collection(&app, &target, &query).map(Arc::new),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    };
    match result {
        Ok(object) => {
            let code = if method == Method::POST { 201 } else { 200 };
            json_response(code, &object)
        }
        Err(error) => error_response(error),
    }
}

fn discovery_document(app: &App, path: &str, headers: &HeaderMap) -> Option<Response> {
    let state = app.state.lock().unwrap();
    let registry = &state.registry;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let document = match segments.as_slice() {
        ["version"] => discovery::version(),
        ["api"] => discovery::core_versions(&app.address),
        ["apis"] => discovery::group_list(registry),
        ["apis", group] => discovery::group(registry, group)?,
        ["api", version] => discovery::resource_list(registry, "", version)?,
        ["apis", group, version] => discovery::resource_list(registry, group, version)?,
        ["openapi", "v3"] => discovery::openapi_index(registry),
        ["openapi", "v3", "api", version] => discovery::openapi_document(registry, "", version)?,
        ["openapi", "v3", "apis", group, version] => {
            discovery::openapi_document(registry, group, version)?
        }
        ["openapi", "v2"] => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if accept.contains(openapi_v2::PROTOBUF) {
                let mut response = (StatusCode::OK, openapi_v2::protobuf()).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    openapi_v2::PROTOBUF_ANSWER.parse().unwrap(),
                );
                return Some(response);
            }
            openapi_v2::json()
        }
        ["healthz" | "livez" | "readyz"] => return Some((StatusCode::OK, "ok").into_response()),
        _ => return None,
    };
    Some(json_response(200, &document))
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let yaml = content_type.contains("yaml");
    let parsed = if protobuf::is_protobuf(content_type) {
        return protobuf::decode(body).map_err(|e| ApiError::new(415, "UnsupportedMediaType", e));
    } else if yaml {
        // JSON is YAML, and what clients send as apply-patch+yaml (kube's
        // server-side apply) is JSON: read it as such, which is far
        // cheaper than the YAML parser, and as YAML only when it is not.
        serde_json::from_slice::<Value>(body)
            .or_else(|_| serde_yaml_ng::from_slice::<Value>(body))
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ApiError::new(
            400,
            "BadRequest",
            format!("the body could not be decoded: {e}"),
        )
    })
}

/// The field manager: `fieldManager`, else the client's user agent up to `/`.
fn write_options(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    subresource: Option<&str>,
) -> WriteOptions {
    let manager = query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| user_agent(headers));
    WriteOptions {
        manager,
        strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
        subresource: subresource.map(str::to_string),
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
    }
}

/// The client's user agent up to `/`.
fn user_agent(headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").to_string()
}

fn selectors(
    query: &HashMap<String, String>,
) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let bad = |e: String| ApiError::new(400, "BadRequest", e);
    let labels = query
        .get("labelSelector")
        .filter(|s| !s.is_empty())
        .map(|s| LabelSelector::parse(s))
        .transpose()
        .map_err(bad)?;
    let fields = query
        .get("fieldSelector")
        .filter(|s| !s.is_empty())
        .map(|s| FieldSelector::parse(s))
        .transpose()
        .map_err(bad)?;
    Ok((labels, fields))
}

/// A list, filtered by selectors, paged with `limit`/`continue` (the token
/// names the page's last object, as the real server's names its last key;
/// simplified: later pages see later state).
fn list(
    app: &App,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let state = app.state.lock().unwrap();
    // Lists are served from the current state, which satisfies `NotOlderThan`
    // and an unset match; an `Exact` read of an older version is not kept.
    if query
        .get("resourceVersionMatch")
        .is_some_and(|m| m == "Exact")
        && query
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            != Some(state.resource_version)
    {
        return Err(ApiError::new(
            410,
            "Expired",
            "the fake serves lists at the current resourceVersion only",
        ));
    }
    let resource_version = state.resource_version.to_string();
    let after: Option<(String, String)> = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| ApiError::new(400, "BadRequest", "invalid continue token"))?,
        ),
        None => None,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // Only the page (and one more, to tell whether another follows) is taken;
    // objects served as stored are shared, not copied.
    let mut items: Vec<Arc<Value>> = state
        .selectable(&target.resource, target.namespace.as_deref(), after)
        .filter(|o| {
            labels.as_ref().is_none_or(|s| s.matches(o))
                && fields.as_ref().is_none_or(|s| s.matches(o))
        })
        .take(limit.map_or(usize::MAX, |l| l.saturating_add(1)))
        .collect();
    drop(state);
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        let last = items.last().map(|o| &o["metadata"]);
        let last_key = last.map(|m| {
            (
                m["namespace"].as_str().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default(),
            )
        });
        let next = base64::engine::general_purpose::STANDARD.encode(json!(last_key).to_string());
        metadata["continue"] = json!(next);
        metadata["remainingItemCount"] = json!(0);
    }
    if accepts_table(headers) {
        let table = discovery::table(&target.resource, &items, &resource_version);
        return Ok(json_response(200, &table));
    }
    if wants_metadata_only(headers) {
        let items: Vec<PartialObjectMetadata> =
            items.iter().map(|o| PartialObjectMetadata::of(o)).collect();
        return Ok(json_response(
            200,
            &ListBody {
                api_version: "meta.k8s.io/v1",
                kind: "PartialObjectMetadataList".into(),
                metadata: &metadata,
                items: &items,
            },
        ));
    }
    let items: Vec<&Value> = items.iter().map(|o| &**o).collect();
    Ok(json_response(
        200,
        &ListBody {
            api_version: &target.resource.api_version(),
            kind: format!("{}List", target.resource.kind),
            metadata: &metadata,
            items: &items,
        },
    ))
}

/// A list as sent, its items serialised where they lie.
#[derive(serde::Serialize)]
struct ListBody<'a, T: serde::Serialize> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: String,
    metadata: &'a Value,
    items: &'a [T],
}

/// `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`: what `kubectl get` asks for.
fn accepts_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`:
/// what kube's `metadata_watcher` and `list_metadata` ask for.
fn wants_metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// An object reduced to its metadata, as the real server answers a
/// metadata-only request (the whole `metadata`, managedFields included).
pub fn partial_object_metadata(object: &Value) -> Value {
    json!(PartialObjectMetadata::of(object))
}

/// [`partial_object_metadata`] serialised from the object where it lies (the
/// controller watches every Secret's metadata: a copy per event would cost
/// more than the event).
#[derive(serde::Serialize)]
pub struct PartialObjectMetadata<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a Value,
}

impl<'a> PartialObjectMetadata<'a> {
    pub fn of(object: &'a Value) -> Self {
        Self {
            api_version: "meta.k8s.io/v1",
            kind: "PartialObjectMetadata",
            metadata: &object["metadata"],
        }
    }
}

fn watch(
    app: &App,
    target: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    let request = watch::WatchRequest {
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        labels,
        fields,
        resource_version: query.get("resourceVersion").and_then(|v| v.parse().ok()),
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
        send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
        metadata_only,
        timeout: Duration::from_secs(
            query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800),
        ),
    };
    let body = watch::start(&app.state, request);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(body)
        .unwrap()
}

fn patch(
    app: &App,
    target: &Target,
    name: &str,
    subresource: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Arc<Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = parse_body(headers, body)?;
    let options = write_options(query, headers, subresource);
    let resource = &target.resource;
    let namespace = target.namespace.as_deref();
    let mut state = app.state.lock().unwrap();
    let existing = state.get(resource, namespace, name);

    if content_type.starts_with("application/apply-patch") {
        if !query.contains_key("fieldManager") {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PATCH with apply-patch requires a fieldManager",
            ));
        }
        let force = query.get("force").is_some_and(|f| f == "true");
        let mut managers = existing
            .as_deref()
            .map(fields::managers)
            .unwrap_or_default();
        let merged = fields::apply(existing.as_deref().ok(), &body, &options.manager, force, &mut managers).map_err(|conflicts| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": fields::dotted(&c.field)}))
                .collect();
            let listed: Vec<String> = conflicts.iter().map(|c| format!("- conflict with \"{}\": {}", c.manager, fields::dotted(&c.field))).collect();
            let mut error = ApiError::new(
                409,
                "Conflict",
                format!("Apply failed with {} conflict{}:\n{}", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }, listed.join("\n")),
            );
            error.body["details"] = json!({"causes": causes});
            error
        })?;
        return match existing {
            Err(_) => state.create(resource, namespace, merged, &options, Some(managers)),
            Ok(_) => {
                let mut merged = merged;
                merged["metadata"]["resourceVersion"] = Value::Null;
                if let Some(m) = merged["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                state.update(resource, namespace, name, merged, &options, Some(managers))
            }
        };
    }

    let merge = content_type.starts_with("application/merge-patch+json");
    let mut object = if merge && subresource == Some("status") {
        // Only the status is taken from a write to the status subresource
        // (see `State::update`): the rest of the object is not copied for it
        // (every status write of a fleet came here).
        let existing = existing?;
        let mut partial = serde_json::Map::new();
        for field in ["apiVersion", "kind", "metadata", "status"] {
            if let Some(value) = existing.get(field) {
                partial.insert(field.to_string(), value.clone());
            }
        }
        Value::Object(partial)
    } else {
        Arc::unwrap_or_clone(existing?)
    };
    let expected_version = body["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    if content_type.starts_with("application/json-patch+json") {
        patch::json_patch(&mut object, body).map_err(|e| ApiError::invalid(resource, name, e))?;
    } else if content_type.starts_with("application/merge-patch+json") {
        patch::merge_patch(&mut object, &body);
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        if resource.schema.is_some() {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources: use a merge patch",
            ));
        }
        patch::strategic_merge(&mut object, &body);
    } else {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        ));
    }
    // A patch carrying a resourceVersion is a precondition; otherwise none.
    match expected_version {
        Some(version) => object["metadata"]["resourceVersion"] = json!(version),
        None => {
            if let Some(m) = object["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    state.update(resource, namespace, name, object, &options, None)
}

fn delete_collection(
    app: &App,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let (labels, fields) = selectors(query)?;
    let mut state = app.state.lock().unwrap();
    let names: Vec<(Option<String>, String)> = state
        .selectable(&target.resource, target.namespace.as_deref(), None)
        .filter(|o| {
            labels.as_ref().is_none_or(|s| s.matches(o))
                && fields.as_ref().is_none_or(|s| s.matches(o))
        })
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().map(str::to_string),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut deleted = Vec::new();
    for (namespace, name) in names {
        deleted.push(state.delete(
            &target.resource,
            namespace.as_deref(),
            &name,
            query.get("propagationPolicy").map(String::as_str),
        )?);
    }
    Ok(
        json!({"apiVersion": target.resource.api_version(), "kind": format!("{}List", target.resource.kind),
        "metadata": {"resourceVersion": state.resource_version.to_string()}, "items": deleted}),
    )
}

/// TokenRequest: a JWT-shaped token (unsigned: `fake-signature`) with the asked
/// audiences and expiry, for a ServiceAccount that exists.
fn token_request(
    app: &App,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let state = app.state.lock().unwrap();
    let account = state.get(&target.resource, target.namespace.as_deref(), name)?;
    let request: Value = parse_body(headers, body).unwrap_or(json!({}));
    let audiences = request["spec"]["audiences"]
        .as_array()
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!("https://kubernetes.default.svc")]);
    let seconds = request["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(3600);
    let now = jiff::Timestamp::now();
    let expires = now + jiff::SignedDuration::from_secs(seconds);
    let namespace = target.namespace.clone().unwrap_or_default();
    let claims = json!({
        "aud": audiences,
        "exp": expires.as_second(),
        "iat": now.as_second(),
        "iss": "https://kubernetes.default.svc",
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]}},
    });
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let token = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"secretsync-fake"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"fake-signature")
    );
    let mut response = request.clone();
    response["apiVersion"] = json!("authentication.k8s.io/v1");
    response["kind"] = json!("TokenRequest");
    response["metadata"] =
        json!({"name": name, "namespace": namespace, "creationTimestamp": storage::now()});
    response["spec"]["audiences"] = json!(audiences);
    response["spec"]["expirationSeconds"] = json!(seconds);
    response["status"] = json!({"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    Ok(response)
}
