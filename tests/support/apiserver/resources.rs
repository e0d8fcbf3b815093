//! Which resources the fake serves, and how a request path names one. The
//! built-in types secretsync touches are always there; a CRD adds its served
//! versions when it is created, as the real server does.

use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    /// One JSONPath, or several separated by `|`: the first that is set.
    pub json_path: String,
    /// An object reference shown as `kind/name`, as `kubectl get events` does.
    pub reference: bool,
}

impl PrinterColumn {
    fn builtin(name: &str, type_: &str, json_path: &str) -> Self {
        Self {
            name: name.into(),
            type_: type_.into(),
            json_path: json_path.into(),
            reference: false,
        }
    }
}

/// One served resource in one group/version.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Has a `/status` subresource: status changes only through it.
    pub status: bool,
    /// CRD schema (`openAPIV3Schema`) for pruning, strict validation and
    /// defaults; shared, as every request takes a copy of its resource type.
    pub schema: Option<std::sync::Arc<Value>>,
    pub printer_columns: Vec<PrinterColumn>,
    /// `kubectl get` shows Name first and Age last; Events show neither
    /// (their Name is a `-o wide` column).
    pub name_and_age: bool,
}

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced,
            status,
            schema: None,
            printer_columns: Vec::new(),
            name_and_age: true,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `api_version` is this resource's (without building the string:
    /// every served object is checked).
    pub fn has_api_version(&self, api_version: &str) -> bool {
        if self.group.is_empty() {
            api_version == self.version
        } else {
            api_version
                .strip_prefix(self.group.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(self.version.as_str())
        }
    }

    /// Objects of every version of one resource share storage, as in etcd;
    /// so do the two Event APIs (see `events`).
    pub fn storage_key(&self) -> (String, String) {
        if super::events::is_events_api(self) {
            return (String::new(), self.plural.clone());
        }
        (self.group.clone(), self.plural.clone())
    }

    /// The URL prefix of this group/version: `/api/v1` or `/apis/G/V`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// Everything served.
#[derive(Clone, Debug)]
pub struct Registry {
    pub types: Vec<ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        let b = ResourceType::builtin;
        let mut types = vec![
            b("", "v1", "Namespace", "namespaces", false, true),
            b("", "v1", "Secret", "secrets", true, false),
            b("", "v1", "ConfigMap", "configmaps", true, false),
            b("", "v1", "ServiceAccount", "serviceaccounts", true, false),
            b("", "v1", "Event", "events", true, false),
            b("", "v1", "Pod", "pods", true, true),
            b("", "v1", "Service", "services", true, true),
            b("events.k8s.io", "v1", "Event", "events", true, false),
            b("apps", "v1", "Deployment", "deployments", true, true),
            b("apps", "v1", "StatefulSet", "statefulsets", true, true),
            b("apps", "v1", "DaemonSet", "daemonsets", true, true),
            b("batch", "v1", "Job", "jobs", true, true),
            b("batch", "v1", "CronJob", "cronjobs", true, true),
            b("coordination.k8s.io", "v1", "Lease", "leases", true, false),
            b(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
                true,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                true,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                false,
            ),
            b(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                true,
            ),
        ];
        // kubectl's short names, by plural (as the real server lists them).
        for t in types.iter_mut() {
            let short = match (t.group.as_str(), t.plural.as_str()) {
                ("", "namespaces") => "ns",
                ("", "configmaps") => "cm",
                ("", "serviceaccounts") => "sa",
                ("", "events") | ("events.k8s.io", "events") => "ev",
                ("", "pods") => "po",
                ("", "services") => "svc",
                ("apps", "deployments") => "deploy",
                ("apps", "statefulsets") => "sts",
                ("apps", "daemonsets") => "ds",
                ("batch", "cronjobs") => "cj",
                ("policy", "poddisruptionbudgets") => "pdb",
                ("apiextensions.k8s.io", "customresourcedefinitions") => "crd",
                _ => "",
            };
            if !short.is_empty() {
                t.short_names.push(short.into());
            }
        }
        // `kubectl get events`, as the real server's table shows them.
        let column = PrinterColumn::builtin;
        types[4].printer_columns = vec![
            column(
                "Last Seen",
                "date",
                ".lastTimestamp|.series.lastObservedTime|.eventTime|.metadata.creationTimestamp",
            ),
            column("Type", "string", ".type"),
            column("Reason", "string", ".reason"),
            PrinterColumn {
                reference: true,
                ..column("Object", "string", ".involvedObject")
            },
            column("Message", "string", ".message"),
        ];
        types[4].name_and_age = false;
        // `secretsync doctor` asks these (answered in `mod.rs`: allowed
        // unless `Faults::deny_access` says otherwise).
        types.push(b(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            false,
        ));
        types.push(b(
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            "csidrivers",
            false,
            false,
        ));
        Self { types }
    }
}

impl Registry {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// Serves (or, with `None`, stops serving) the versions of a CRD.
    pub fn set_crd(&mut self, crd: &Value, served: bool) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let plural = spec["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.types
            .retain(|t| !(t.group == group && t.plural == plural));
        if !served {
            return;
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"].as_bool() == Some(false) {
                continue;
            }
            let printer_columns = version["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    type_: c["type"].as_str().unwrap_or("string").into(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                    reference: false,
                })
                .collect();
            self.types.push(ResourceType {
                group: group.clone(),
                version: version["name"].as_str().unwrap_or_default().into(),
                kind: spec["names"]["kind"].as_str().unwrap_or_default().into(),
                plural: plural.clone(),
                singular: spec["names"]["singular"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        spec["names"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase()
                    }),
                short_names: strings(&spec["names"]["shortNames"]),
                categories: strings(&spec["names"]["categories"]),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                status: version["subresources"]["status"].is_object(),
                schema: version["schema"]
                    .get("openAPIV3Schema")
                    .cloned()
                    .map(std::sync::Arc::new),
                printer_columns,
                name_and_age: true,
            });
        }
    }
}

/// What a resource request path names.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits `/api/v1/namespaces/NS/secrets/NAME/status` and the like. `None`
/// when the path names no served resource.
pub fn parse_path(registry: &Registry, path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if inside_namespace(group, rest) => {
            (Some(namespace.to_string()), rest)
        }
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let resource = registry.find(group, version, plural)?.clone();
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

/// Whether `namespaces/NAME/REST` names something inside the namespace; in the
/// core group, `namespaces/NAME/status` is the Namespace's own status.
fn inside_namespace(group: &str, rest: &[&str]) -> bool {
    match rest {
        [] => false,
        ["status"] => !group.is_empty(),
        _ => true,
    }
}

/// A `Status` object, shaped as the real server sends it.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}
