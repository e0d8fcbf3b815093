//! Who asked what: every resource request, as RBAC sees it (verb, group,
//! resource, namespace), so a test can check that a component's role grants
//! exactly what it uses.

use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    /// The client's user agent up to `/` (`kubectl`, `secretsync`).
    pub agent: String,
    /// RBAC's verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    /// `secrets`, or with a subresource `serviceaccounts/token`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Default)]
pub struct Audit {
    requests: Mutex<Vec<Request>>,
}

impl Audit {
    pub fn record(&self, request: Request) {
        self.requests.lock().unwrap().push(request);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// RBAC's verb for an HTTP method on a path that names one object or a collection.
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}
