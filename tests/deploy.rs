//! The deployment manifests: the Helm chart (deploy/helm/secretsync/) lints
//! and renders with default and all-features values, every object it renders
//! is accepted by the test bed's API server, its RBAC grants each feature what
//! the controller's code uses and nothing else, its CRDs are crds/, and the
//! kustomize base (deploy/) is the chart's defaults.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use support::apiserver::FakeApiServer;
use support::peers;

const CHART: &str = "deploy/helm/secretsync";
const ALL_FEATURES: &str = "deploy/helm/secretsync/ci/all-features-values.yaml";
const RELEASE: &str = "secretsync";
/// Bitnami's SealedSecret CRD (crds/compat/), with `crds.bitnamiCompat`.
const BITNAMI_CRD: &str = "sealedsecrets.bitnami.com";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// helm, or `None` and a note saying why the test skips.
fn helm(test: &str) -> Option<PathBuf> {
    let helm = peers::helm();
    if helm.is_none() {
        eprintln!(
            "skipping {test}: no helm (scripts/test installs one on Linux x86_64; elsewhere put helm on PATH)"
        );
    }
    helm
}

fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{}", peers::missing(program, e)));
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

/// `helm template` of the chart in namespace `secretsync`, with extra arguments.
fn render(helm: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", RELEASE];
    args.extend_from_slice(extra);
    documents(&run(helm, &args))
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn chart_lints_and_renders_with_default_and_all_features_values() {
    let Some(helm) = helm("chart_lints_and_renders_with_default_and_all_features_values") else {
        return;
    };
    run(&helm, &["lint", "--strict", CHART]);
    run(&helm, &["lint", "--strict", CHART, "-f", ALL_FEATURES]);

    let defaults = render(&helm, &[]);
    let deployment = kind(&defaults, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--lease-name=secretsync"), "{args:?}");
    assert!(!args.contains(&"--no-leader-election"), "{args:?}");
    assert!(!args.iter().any(|a| a.contains("bitnami")), "{args:?}");
    assert!(
        !args.iter().any(|a| a.contains("change-events")),
        "{args:?}"
    );
    assert!(
        kind(&defaults, "DaemonSet").is_empty(),
        "CSI provider is off by default"
    );
    assert!(kind(&defaults, "ServiceMonitor").is_empty());
    assert_eq!(kind(&defaults, "CustomResourceDefinition").len(), 12);
    let account = kind(&defaults, "ServiceAccount")[0];
    assert!(account["metadata"]["annotations"].is_null());

    let all = render(&helm, &["-f", ALL_FEATURES]);
    let container = &kind(&all, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for flag in [
        "--eso-compat",
        "--bitnami-compat",
        "--bitnami-keys-namespace=kube-system",
        "--namespaces=team-a,team-b",
        "--api-concurrency=16",
        "--template-timeout=2s",
        "--template-max-output=1048576",
        "--reload",
        "--reload-debounce=5s",
        "--reload-rate=2",
        "--log-format=json",
        "--change-events-queue=https://sqs.eu-west-1.amazonaws.com/111122223333/secretsync-changes",
        "--change-events-queue=https://sqs.us-east-1.amazonaws.com/111122223333/secretsync-changes",
    ] {
        assert!(args.contains(&flag), "{flag} missing: {args:?}");
    }
    let account = kind(&all, "ServiceAccount")
        .into_iter()
        .find(|a| a["metadata"]["name"] == RELEASE)
        .unwrap();
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/secretsync"
    );
    let csi = kind(&all, "DaemonSet")[0];
    let provider = &csi["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(provider["args"][0], "csi-provider");
    assert_eq!(
        provider["args"][1],
        "--socket=/etc/kubernetes/secrets-store-csi-providers/secretsync.sock"
    );
    assert_eq!(
        csi["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"],
        "/etc/kubernetes/secrets-store-csi-providers"
    );
    // In ASCP's place: SecretProviderClasses keep `provider: aws`.
    let as_ascp = render(
        &helm,
        &["-f", ALL_FEATURES, "--set", "csiProvider.providerName=aws"],
    );
    assert_eq!(
        kind(&as_ascp, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"][1],
        "--socket=/etc/kubernetes/secrets-store-csi-providers/aws.sock"
    );
    assert_eq!(kind(&all, "ServiceMonitor").len(), 1);
    assert_eq!(kind(&all, "PrometheusRule").len(), 1);
    // Ours, ESO's and Bitnami's SealedSecret CRD.
    assert_eq!(kind(&all, "CustomResourceDefinition").len(), 24);

    // One replica only without leader election; two without is refused.
    let error = Command::new(&helm)
        .args([
            "template",
            RELEASE,
            CHART,
            "--set",
            "leaderElection.enabled=false",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!error.status.success());
    assert!(String::from_utf8_lossy(&error.stderr).contains("needs replicas: 1"));
    let single = render(
        &helm,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicas=1",
        ],
    );
    assert!(kind(&single, "PodDisruptionBudget").is_empty());
}

/// The files of a directory (not below it), by name.
fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// The chart's copies are crds/ byte for byte (copy them again after
/// `cargo run -- crdgen --out-dir crds`), and render as crds/ has them.
#[test]
fn chart_crds_are_the_crds_directory() {
    for (ours, chart) in [
        ("crds", "deploy/helm/secretsync/files/crds"),
        ("crds/compat", "deploy/helm/secretsync/files/crds/compat"),
    ] {
        assert_eq!(
            yaml_files(&root().join(ours)),
            yaml_files(&root().join(chart)),
            "{chart} differs from {ours}: cp {ours}/*.yaml {chart}/"
        );
    }
    let Some(helm) = helm("chart_crds_are_the_crds_directory (rendering)") else {
        return;
    };
    let rendered = render(
        &helm,
        &[
            "--set",
            "crds.esoCompat=true",
            "--set",
            "crds.bitnamiCompat=true",
        ],
    );
    let mut expected: Vec<Value> = yaml_files(&root().join("crds"))
        .values()
        .chain(yaml_files(&root().join("crds/compat")).values())
        .flat_map(|text| documents(text))
        .collect();
    let mut got: Vec<Value> = kind(&rendered, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    for crd in &got {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "uninstalling must not delete the CRDs (and every object of their kinds)"
        );
        // Ours, where Bitnami's would be: how an upgrade tells them apart.
        assert_eq!(
            crd["metadata"]["annotations"]["secretsync.io/compat"].as_str(),
            (crd["metadata"]["name"] == BITNAMI_CRD).then_some("bitnami"),
        );
    }
    // Each compat value installs its own: ESO's without Bitnami's and back.
    let names = |args: &[&str]| -> BTreeSet<String> {
        kind(&render(&helm, args), "CustomResourceDefinition")
            .into_iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let ours = names(&[]);
    let eso = names(&["--set", "crds.esoCompat=true"]);
    let bitnami = names(&["--set", "crds.bitnamiCompat=true"]);
    assert!(!eso.contains(BITNAMI_CRD));
    assert!(
        eso.iter()
            .all(|n| ours.contains(n) || n.ends_with(".external-secrets.io"))
    );
    assert_eq!(
        bitnami.difference(&ours).collect::<Vec<_>>(),
        vec![BITNAMI_CRD]
    );
    for crd in got.iter_mut() {
        crd["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
    }
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap().to_string();
    expected.sort_by_key(name);
    got.sort_by_key(name);
    assert_eq!(
        got.iter().map(name).collect::<Vec<_>>(),
        expected.iter().map(name).collect::<Vec<_>>()
    );
    for (got, expected) in got.iter_mut().zip(expected.iter_mut()) {
        // Helm's fromYaml/toYaml reads every number as a float: 0.0 is 0.
        as_floats(got);
        as_floats(expected);
        assert!(got == expected, "{} renders differently", name(expected));
    }
}

fn as_floats(value: &mut Value) {
    match value {
        Value::Number(n) => *value = json!(n.as_f64().unwrap()),
        Value::Object(map) => map.values_mut().for_each(as_floats),
        Value::Array(items) => items.iter_mut().for_each(as_floats),
        _ => {}
    }
}

/// Labels only Helm adds, and the image the base leaves to an overlay.
fn comparable(mut doc: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(labels)) = map.get_mut("labels") {
                    for helm_only in [
                        "helm.sh/chart",
                        "app.kubernetes.io/managed-by",
                        "app.kubernetes.io/version",
                    ] {
                        labels.remove(helm_only);
                    }
                }
                if let Some(Value::String(image)) = map.get_mut("image") {
                    *image = "IMAGE".into();
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut doc);
    doc
}

#[test]
fn kustomize_base_renders_the_charts_defaults() {
    let Some(helm) = helm("kustomize_base_renders_the_charts_defaults") else {
        return;
    };
    let key = |d: &Value| {
        format!(
            "{}/{}/{}",
            d["kind"].as_str().unwrap(),
            d["metadata"]["namespace"].as_str().unwrap_or(""),
            d["metadata"]["name"].as_str().unwrap()
        )
    };
    let chart: BTreeMap<String, Value> = render(&helm, &["--set", "crds.install=false"])
        .into_iter()
        .map(|d| (key(&d), comparable(d)))
        .collect();
    let base: BTreeMap<String, Value> =
        documents(&run(&peers::kubectl(), &["kustomize", "deploy/"]))
            .into_iter()
            .filter(|d| d["kind"] != "Namespace")
            .map(|d| (key(&d), comparable(d)))
            .collect();
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>()
    );
    for (name, object) in &chart {
        assert_eq!(
            object, &base[name],
            "{name} differs between chart and deploy/"
        );
    }
}

/// Stand-ins for the Prometheus Operator's CRDs, for its kinds to be served.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(peers::kubectl())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(root())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}", peers::missing(&peers::kubectl(), e)));
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every object the chart renders, with default and all-features values, is
/// accepted by `kubectl apply --dry-run=server` (and then for real), strictly
/// checked: built-in kinds against their types, CRDs as the fake serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_object_is_accepted_by_the_test_bed() {
    let Some(helm) = helm("every_rendered_object_is_accepted_by_the_test_bed") else {
        return;
    };
    for values in [None, Some(ALL_FEATURES)] {
        let server = FakeApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig);
        let mut args = vec!["template", RELEASE, CHART, "--namespace", RELEASE];
        if let Some(values) = values {
            args.extend(["-f", values]);
        }
        let rendered = dir.path().join("rendered.yaml");
        std::fs::write(&rendered, run(&helm, &args)).unwrap();
        let monitoring = dir.path().join("monitoring.yaml");
        std::fs::write(&monitoring, MONITORING_CRDS).unwrap();
        kubectl(&kubeconfig, &["apply", "-f", monitoring.to_str().unwrap()]).await;
        for namespace in [RELEASE, "team-a", "team-b"] {
            kubectl(&kubeconfig, &["create", "namespace", namespace]).await;
        }
        let file = rendered.to_str().unwrap();
        let before = server.resource_version();
        let out = kubectl(&kubeconfig, &["apply", "--dry-run=server", "-f", file]).await;
        assert_eq!(
            server.resource_version(),
            before,
            "a dry run stored something"
        );
        let objects = documents(&std::fs::read_to_string(&rendered).unwrap()).len();
        assert_eq!(
            out.lines()
                .filter(|l| l.ends_with("(server dry run)"))
                .count(),
            objects,
            "{out}"
        );
        let out = kubectl(&kubeconfig, &["apply", "-f", file]).await;
        assert_eq!(
            out.lines().filter(|l| l.ends_with(" created")).count(),
            objects,
            "{out}"
        );
        kubectl(
            &kubeconfig,
            &["get", "deployment", RELEASE, "-n", RELEASE, "-o", "name"],
        )
        .await;
    }
}

/// One RBAC rule, flattened: (apiGroup, resource, verb).
type Grant = (String, String, String);

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// What the controller's ServiceAccount may do: per role, the grants, and
/// where (None: cluster-wide; Some(ns)), with any resourceNames.
struct Access {
    grants: Vec<(Grant, Option<String>, Vec<String>)>,
}

impl Access {
    fn of(docs: &[Value], account: &str) -> Access {
        let role = |kind: &str, name: &str, namespace: Option<&str>| -> Option<&Value> {
            docs.iter().find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == name
                    && (kind == "ClusterRole" || d["metadata"]["namespace"].as_str() == namespace)
            })
        };
        let mut grants = Vec::new();
        for binding in docs
            .iter()
            .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        {
            let bound = binding["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account);
            if !bound {
                continue;
            }
            let scope = binding["metadata"]["namespace"]
                .as_str()
                .filter(|_| binding["kind"] == "RoleBinding")
                .map(str::to_string);
            let reference = &binding["roleRef"];
            let role = role(
                reference["kind"].as_str().unwrap(),
                reference["name"].as_str().unwrap(),
                scope.as_deref(),
            )
            .unwrap_or_else(|| {
                panic!(
                    "{} binds a missing role {reference}",
                    binding["metadata"]["name"]
                )
            });
            for rule in role["rules"].as_array().unwrap() {
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            for field in [&group, &resource, &verb] {
                                assert!(!field.contains('*'), "a wildcard in {rule}");
                            }
                            grants.push((
                                (group.clone(), resource.clone(), verb),
                                scope.clone(),
                                strings(&rule["resourceNames"]),
                            ));
                        }
                    }
                }
            }
        }
        Access { grants }
    }

    fn all(&self) -> BTreeSet<Grant> {
        self.grants.iter().map(|(g, _, _)| g.clone()).collect()
    }

    fn allows(&self, request: &support::apiserver::Request) -> bool {
        self.grants
            .iter()
            .any(|((group, resource, verb), scope, names)| {
                *group == request.group
                    && *resource == request.resource
                    && *verb == request.verb
                    && scope
                        .as_ref()
                        .is_none_or(|s| request.namespace.as_deref() == Some(s))
                    && (names.is_empty()
                        || request.name.as_ref().is_some_and(|n| names.contains(n)))
            })
    }
}

fn grants(group: &str, resources: &[&str], verbs: &[&str]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for resource in resources {
        for verb in verbs {
            out.insert((group.into(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

/// What each feature needs, as the controller's code uses it.
fn expected(eso: bool, bitnami: bool, jwt: bool, reload: bool, rollouts: bool) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let mut groups = vec!["secretsync.io"];
    if eso {
        groups.push("external-secrets.io");
    }
    for group in &groups {
        let kinds = [
            "externalsecrets",
            "secretstores",
            "clustersecretstores",
            "clusterexternalsecrets",
        ];
        out.extend(grants(group, &kinds, &["get", "list", "watch"]));
        let status = [
            "externalsecrets/status",
            "secretstores/status",
            "clustersecretstores/status",
            "clusterexternalsecrets/status",
        ];
        out.extend(grants(group, &status, &["patch"]));
        // ClusterExternalSecrets: their finalizer; the ExternalSecrets they write.
        out.extend(grants(group, &["clusterexternalsecrets"], &["patch"]));
        out.extend(grants(
            group,
            &["externalsecrets"],
            &["create", "patch", "delete"],
        ));
        // PushSecrets: watched, their finalizer and status written; written
        // by ClusterPushSecrets, which are watched and have a status.
        out.extend(grants(
            group,
            &["pushsecrets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ));
        out.extend(grants(
            group,
            &["clusterpushsecrets"],
            &["get", "list", "watch"],
        ));
        out.extend(grants(
            group,
            &["pushsecrets/status", "clusterpushsecrets/status"],
            &["patch"],
        ));
    }
    out.extend(grants(
        "secretsync.io",
        &["sealedsecrets"],
        &["get", "list", "watch"],
    ));
    // Generators: one GET of the generator an ExternalSecret names per refresh.
    let mut generator_groups = vec!["generators.secretsync.io"];
    if eso {
        generator_groups.push("generators.external-secrets.io");
    }
    for group in generator_groups {
        let kinds = [
            "passwords",
            "uuids",
            "ecrauthorizationtokens",
            "stssessiontokens",
            "clustergenerators",
        ];
        out.extend(grants(group, &kinds, &["get"]));
    }
    out.extend(grants(
        "secretsync.io",
        &["sealedsecrets/status"],
        &["patch"],
    ));
    out.extend(grants(
        "",
        &["secrets"],
        &["get", "list", "watch", "create", "patch", "delete"],
    ));
    out.extend(grants("", &["namespaces"], &["list", "watch", "patch"]));
    out.extend(grants("events.k8s.io", &["events"], &["create", "patch"]));
    out.extend(grants(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    ));
    if reload {
        out.extend(grants("", &["configmaps"], &["get", "list", "watch"]));
        let workloads = ["deployments", "statefulsets", "daemonsets"];
        out.extend(grants(
            "apps",
            &workloads,
            &["get", "list", "watch", "patch"],
        ));
        // Reloader's CronJob (a Job from its template) and Job (made again) restarts.
        out.extend(grants(
            "batch",
            &["cronjobs"],
            &["get", "list", "watch", "patch"],
        ));
        out.extend(grants(
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "delete", "patch"],
        ));
        out.extend(grants(
            "secrets-store.csi.x-k8s.io",
            &["secretproviderclasses", "secretproviderclasspodstatuses"],
            &["list", "watch"],
        ));
        if rollouts {
            out.extend(grants(
                "argoproj.io",
                &["rollouts"],
                &["get", "list", "watch", "patch"],
            ));
        }
    } else {
        out.extend(grants("", &["configmaps"], &["get"]));
    }
    if bitnami {
        // Bitnami's SealedSecrets: watched, their status merge-patched; their
        // Secrets replaced as Bitnami's controller does. (The keys: list and
        // watch of Secrets in the keys namespace, as above.)
        out.extend(grants(
            "bitnami.com",
            &["sealedsecrets"],
            &["get", "list", "watch"],
        ));
        out.extend(grants("bitnami.com", &["sealedsecrets/status"], &["patch"]));
        out.extend(grants("", &["secrets"], &["update"]));
    }
    if jwt {
        out.extend(grants("", &["serviceaccounts"], &["get"]));
        out.extend(grants("", &["serviceaccounts/token"], &["create"]));
    }
    out
}

#[test]
fn rbac_grants_what_each_feature_needs_and_nothing_else() {
    let Some(helm) = helm("rbac_grants_what_each_feature_needs_and_nothing_else") else {
        return;
    };
    for (eso, bitnami, jwt, reload, rollouts) in [
        (false, false, false, false, false),
        (true, false, false, false, false),
        (false, true, false, false, false),
        (false, false, true, false, false),
        (false, false, false, true, false),
        (false, false, false, true, true),
        (true, true, true, true, true),
    ] {
        let sets = [
            format!("esoCompat.enabled={eso}"),
            format!("bitnamiCompat.enabled={bitnami}"),
            format!("jwtAuth.enabled={jwt}"),
            format!("reload.enabled={reload}"),
            format!("reload.argoRollouts={rollouts}"),
        ];
        let mut args = Vec::new();
        for set in &sets {
            args.extend(["--set", set.as_str()]);
        }
        let docs = render(&helm, &args);
        let access = Access::of(&docs, RELEASE);
        assert_eq!(
            access.all(),
            expected(eso, bitnami, jwt, reload, rollouts),
            "eso {eso}, bitnami {bitnami}, jwt {jwt}, reload {reload}, rollouts {rollouts}"
        );
    }

    // With namespaces listed, namespaced objects are granted there only; the
    // sealing keys Secret and the Lease stay reachable in the release
    // namespace, and Bitnami's keys (list/watch by label) in theirs.
    let docs = render(&helm, &["-f", ALL_FEATURES]);
    let access = Access::of(&docs, RELEASE);
    for ((group, resource, verb), scope, names) in &access.grants {
        let cluster_scoped = [
            "clustersecretstores",
            "clustersecretstores/status",
            "clusterexternalsecrets",
            "clusterexternalsecrets/status",
            "clusterpushsecrets",
            "clusterpushsecrets/status",
            "clustergenerators",
            "namespaces",
        ]
        .contains(&resource.as_str())
            || resource.starts_with("serviceaccounts");
        match scope {
            None => assert!(cluster_scoped, "{group}/{resource} granted cluster-wide"),
            Some(ns) if ns == RELEASE => assert!(
                resource == "leases"
                    || (resource == "secrets" && names == &["secretsync-sealing-keys"]),
                "{group}/{resource} in {ns}"
            ),
            Some(ns) if ns == "kube-system" => assert!(
                resource == "secrets" && ["list", "watch"].contains(&verb.as_str()),
                "{group}/{resource} {verb} in {ns}"
            ),
            Some(ns) => assert!(["team-a", "team-b"].contains(&ns.as_str()), "{ns}"),
        }
    }
    // The CSI provider's own account: the mounting pod's ServiceAccount only.
    let csi = Access::of(&docs, "secretsync-csi-provider");
    assert_eq!(csi.all(), grants("", &["serviceaccounts"], &["get"]));
}

/// The controller, run against the test bed, makes only requests the chart's
/// RBAC grants (ExternalSecrets with templates and dataFrom, SealedSecrets,
/// ESO manifests, leader election).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_controller_makes_is_granted() {
    let Some(helm) = helm("every_request_the_controller_makes_is_granted") else {
        return;
    };
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    kubectl(&kubeconfig, &["apply", "-f", "crds/", "-f", "crds/compat/"]).await;
    kubectl(&kubeconfig, &["create", "namespace", RELEASE]).await;
    kubectl(&kubeconfig, &["apply", "-f", "examples/"]).await;
    let eso = dir.path().join("eso.yaml");
    std::fs::write(
        &eso,
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: eso, namespace: demo}\nspec:\n  provider:\n    fake:\n      data: [{key: k, value: v}]\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: eso, namespace: demo}\nspec:\n  secretStoreRef: {name: eso}\n  data: [{secretKey: k, remoteRef: {key: k}}]\n---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: eso-everywhere}\nspec:\n  namespaces: [demo]\n  externalSecretName: eso-copy\n  externalSecretSpec:\n    secretStoreRef: {name: eso}\n    data: [{secretKey: k, remoteRef: {key: k}}]\n",
    )
    .unwrap();
    kubectl(&kubeconfig, &["apply", "-f", eso.to_str().unwrap()]).await;

    // A SealedSecret, and the controller's key in its own namespace.
    let key = dir.path().join("cluster.key");
    let secretsync = Path::new(env!("CARGO_BIN_EXE_secretsync"));
    let recipient = run(secretsync, &["keygen", "-o", key.to_str().unwrap()]);
    kubectl(
        &kubeconfig,
        &[
            "create",
            "secret",
            "generic",
            "secretsync-sealing-keys",
            "-n",
            RELEASE,
            &format!("--from-file=cluster.key={}", key.display()),
        ],
    )
    .await;
    let plain = "apiVersion: v1\nkind: Secret\nmetadata: {name: sealed, namespace: demo}\nstringData: {password: p}\n";
    let mut seal = Command::new(secretsync)
        .args(["seal", "-r", recipient.trim()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    seal.stdin
        .take()
        .unwrap()
        .write_all(plain.as_bytes())
        .unwrap();
    let sealed = seal.wait_with_output().unwrap();
    assert!(sealed.status.success());
    let sealed_file = dir.path().join("sealed.yaml");
    std::fs::write(&sealed_file, sealed.stdout).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", sealed_file.to_str().unwrap()]).await;

    let controller = support::controller::RunningController::start(
        &kubeconfig,
        &[
            "--eso-compat",
            "--lease-namespace",
            RELEASE,
            "--lease-name",
            RELEASE,
        ],
        &[],
    );
    let client = server.client();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client, "demo");
    let synced = support::cluster::eventually(Duration::from_secs(120), || async {
        let names = [
            "database-credentials",
            "app-config",
            "eso",
            "eso-copy",
            "sealed",
        ];
        for name in names {
            secrets.get_opt(name).await.ok()??;
        }
        Some(())
    })
    .await;
    assert!(synced.is_some(), "{}", controller.log_text());

    let docs = render(&helm, &["--set", "esoCompat.enabled=true"]);
    let access = Access::of(&docs, RELEASE);
    let requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.agent != "kubectl")
        .collect();
    assert!(
        requests.iter().any(|r| r.resource == "leases"),
        "{requests:?}"
    );
    let denied = denied(&requests, &access);
    assert!(denied.is_empty(), "not granted by the chart: {denied:#?}");
    // And the check can fail: without esoCompat the ESO requests are refused.
    let without = Access::of(&render(&helm, &[]), RELEASE);
    assert!(
        requests
            .iter()
            .any(|r| r.group == "external-secrets.io" && !without.allows(r))
    );
    drop(controller);

    bitnami_compat_requests_are_granted(&helm).await;
}

/// The requests a run makes that `access` does not grant.
fn denied(requests: &[support::apiserver::Request], access: &Access) -> BTreeSet<String> {
    requests
        .iter()
        .filter(|r| !access.allows(r))
        .map(|r| {
            format!(
                "{} {}/{} in {:?} ({:?})",
                r.verb, r.group, r.resource, r.namespace, r.name
            )
        })
        .collect()
}

/// `--bitnami-compat` with `--namespaces demo` (the keys' namespace, the
/// release's, left out of it): Bitnami's CRD, a key imported from Bitnami's
/// controller, a SealedSecret that unseals (its Secret created, then
/// replaced when it changes) and one that does not (a failed status).
async fn bitnami_compat_requests_are_granted(helm: &Path) {
    use base64::Engine as _;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DynamicObject};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use secretsync::sealed::bitnami;

    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let crd = format!("crds/compat/{BITNAMI_CRD}.yaml");
    kubectl(&kubeconfig, &["apply", "-f", "crds/", "-f", &crd]).await;
    for namespace in [RELEASE, "demo"] {
        kubectl(&kubeconfig, &["create", "namespace", namespace]).await;
    }

    // The key as Bitnami's controller keeps it, in the release namespace.
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = private.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
    let key = bitnami::parse_keys(pem.as_bytes(), "test key")
        .unwrap()
        .remove(0);
    let key_secret = bitnami::key_secret(&key, RELEASE).unwrap();
    let keys_file = dir.path().join("key.json");
    let mut key_json = serde_json::to_value(&key_secret).unwrap();
    key_json["apiVersion"] = json!("v1");
    key_json["kind"] = json!("Secret");
    std::fs::write(&keys_file, key_json.to_string()).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", keys_file.to_str().unwrap()]).await;

    let seal = |plain: &str| {
        let sealed = bitnami::encrypt(key.public_key(), plain.as_bytes(), b"demo/bitnami").unwrap();
        base64::engine::general_purpose::STANDARD.encode(sealed)
    };
    let sealed_secrets = |password: &str| {
        format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {{name: bitnami, namespace: demo}}\nspec:\n  encryptedData: {{password: {}}}\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {{name: undecryptable, namespace: demo}}\nspec:\n  encryptedData: {{password: {}}}\n",
            seal(password),
            base64::engine::general_purpose::STANDARD.encode(b"not sealed to any key"),
        )
    };
    let sealed_file = dir.path().join("bitnami.yaml");
    std::fs::write(&sealed_file, sealed_secrets("Bitnami-pw-1")).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", sealed_file.to_str().unwrap()]).await;

    let mut controller = support::controller::RunningController::start(
        &kubeconfig,
        &[
            "--bitnami-compat",
            "--namespaces",
            "demo",
            "--lease-namespace",
            RELEASE,
            "--lease-name",
            RELEASE,
        ],
        &[],
    );
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "demo");
    let password = |expected: &'static str| {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt("bitnami").await.ok()??;
            (secret.data?.get("password")?.0 == expected.as_bytes()).then_some(())
        }
    };
    let created =
        support::cluster::eventually(Duration::from_secs(120), || password("Bitnami-pw-1")).await;
    assert!(created.is_some(), "{}", controller.log_text());
    // A new value: the Secret is replaced, as Bitnami's controller does.
    std::fs::write(&sealed_file, sealed_secrets("Bitnami-pw-2")).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", sealed_file.to_str().unwrap()]).await;
    let updated =
        support::cluster::eventually(Duration::from_secs(60), || password("Bitnami-pw-2")).await;
    assert!(updated.is_some(), "{}", controller.log_text());
    let sealed_api: Api<DynamicObject> = Api::namespaced_with(
        client,
        "demo",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("bitnami.com", "v1alpha1", "SealedSecret"),
            "sealedsecrets",
        ),
    );
    let failed = support::cluster::eventually(Duration::from_secs(60), || async {
        let object = sealed_api.get("undecryptable").await.ok()?;
        let conditions = object.data["status"]["conditions"].as_array()?.clone();
        (!conditions.is_empty()).then_some(conditions)
    })
    .await;
    assert!(failed.is_some(), "{}", controller.log_text());
    assert!(controller.terminate().success());
    controller.assert_never_logged(&["Bitnami-pw-1", "Bitnami-pw-2"]);

    let requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.agent != "kubectl")
        .collect();
    let made = |verb: &str, group: &str, resource: &str, namespace: &str| {
        requests.iter().any(|r| {
            r.verb == verb
                && r.group == group
                && r.resource == resource
                && r.namespace.as_deref() == Some(namespace)
        })
    };
    for (verb, group, resource, namespace) in [
        ("list", "bitnami.com", "sealedsecrets", "demo"),
        ("watch", "bitnami.com", "sealedsecrets", "demo"),
        ("patch", "bitnami.com", "sealedsecrets/status", "demo"),
        ("list", "", "secrets", RELEASE),
        ("watch", "", "secrets", RELEASE),
        ("create", "", "secrets", "demo"),
        ("update", "", "secrets", "demo"),
    ] {
        assert!(
            made(verb, group, resource, namespace),
            "no {verb} {group}/{resource} in {namespace}: {requests:?}"
        );
    }
    let docs = render(
        helm,
        &[
            "--set",
            "bitnamiCompat.enabled=true",
            "--set",
            "namespaces={demo}",
        ],
    );
    let denied_requests = denied(&requests, &Access::of(&docs, RELEASE));
    assert!(
        denied_requests.is_empty(),
        "not granted by the chart: {denied_requests:#?}"
    );
    // Without bitnamiCompat, Bitnami's objects, the keys and the replaces are refused.
    let without = Access::of(&render(helm, &["--set", "namespaces={demo}"]), RELEASE);
    for (verb, group, resource) in [
        ("watch", "bitnami.com", "sealedsecrets"),
        ("patch", "bitnami.com", "sealedsecrets/status"),
        ("list", "", "secrets"),
        ("update", "", "secrets"),
    ] {
        assert!(
            requests.iter().any(|r| r.verb == verb
                && r.group == group
                && r.resource == resource
                && !without.allows(r)),
            "{verb} {group}/{resource} granted without bitnamiCompat"
        );
    }
}

/// `crds.bitnamiCompat` installs Bitnami's SealedSecret CRD only where the
/// cluster has none (Helm's lookup): over Bitnami's own, the install would
/// fail or take over the CRD every SealedSecret lives in. Ours is annotated,
/// so an upgrade keeps it. Real helm against the test bed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitnami_crd_is_installed_only_where_bitnamis_is_absent() {
    let Some(helm) = helm("bitnami_crd_is_installed_only_where_bitnamis_is_absent") else {
        return;
    };
    for bitnamis_own in [false, true] {
        let server = FakeApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig);
        let kubeconfig_arg = kubeconfig.to_str().unwrap().to_string();
        if bitnamis_own {
            // A stand-in for Bitnami's CRD, as its chart leaves it.
            let text =
                std::fs::read_to_string(root().join(format!("crds/compat/{BITNAMI_CRD}.yaml")))
                    .unwrap();
            let mut crd: Value = serde_yaml_ng::from_str(&text).unwrap();
            crd["metadata"]["labels"] = json!({"app.kubernetes.io/name": "sealed-secrets"});
            let file = dir.path().join("bitnami-crd.json");
            std::fs::write(&file, crd.to_string()).unwrap();
            kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]).await;
        }
        let helm_in = |verb: &str| {
            run(
                &helm,
                &[
                    "--kubeconfig",
                    &kubeconfig_arg,
                    verb,
                    RELEASE,
                    CHART,
                    "--namespace",
                    RELEASE,
                    "--create-namespace",
                    "--set",
                    "crds.bitnamiCompat=true",
                    "--set",
                    "bitnamiCompat.enabled=true",
                ],
            )
        };
        let in_release = || {
            let manifest = run(
                &helm,
                &[
                    "--kubeconfig",
                    &kubeconfig_arg,
                    "get",
                    "manifest",
                    RELEASE,
                    "--namespace",
                    RELEASE,
                ],
            );
            kind(&documents(&manifest), "CustomResourceDefinition")
                .iter()
                .any(|c| c["metadata"]["name"] == BITNAMI_CRD)
        };
        let annotation = || async {
            kubectl(
                &kubeconfig,
                &[
                    "get",
                    "crd",
                    BITNAMI_CRD,
                    "-o",
                    r"jsonpath={.metadata.annotations.secretsync\.io/compat}",
                ],
            )
            .await
        };
        helm_in("install");
        assert_eq!(in_release(), !bitnamis_own, "Bitnami's own: {bitnamis_own}");
        helm_in("upgrade");
        assert_eq!(in_release(), !bitnamis_own, "Bitnami's own: {bitnamis_own}");
        let expected = if bitnamis_own { "" } else { "bitnami" };
        assert_eq!(annotation().await, expected);
        if bitnamis_own {
            let managed_by = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "crd",
                    BITNAMI_CRD,
                    "-o",
                    r"jsonpath={.metadata.labels}",
                ],
            )
            .await;
            assert!(!managed_by.contains("Helm"), "{managed_by}");
        }
    }
}

/// Metric names a PromQL expression reads: `secretsync_...` words.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bsecretsync_[a-z_]+\b").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// Series the controller exports, from its own /metrics: counters as
/// `_total`, histograms as `_bucket`, `_sum`, `_count`.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// Every expression of the Grafana dashboard and of the chart's
/// PrometheusRule names a metric the controller exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_read_exported_metrics() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    kubectl(&kubeconfig, &["apply", "-f", "crds/"]).await;
    kubectl(&kubeconfig, &["apply", "-f", "examples/"]).await;
    let controller =
        support::controller::RunningController::start(&kubeconfig, &["--no-leader-election"], &[]);
    // Labelled metrics appear with their first sample: wait for the examples' syncs.
    let url = format!("{}/metrics", controller.health);
    let exposition = support::cluster::eventually(Duration::from_secs(120), || {
        let url = url.clone();
        async move {
            let text = tokio::task::spawn_blocking(move || {
                ureq::get(&url)
                    .call()
                    .ok()?
                    .body_mut()
                    .read_to_string()
                    .ok()
            })
            .await
            .ok()??;
            let synced = text.contains("secretsync_syncs_total{")
                && text.contains("secretsync_store_ready{")
                && text.contains("secretsync_secret_writes_total{");
            synced.then_some(text)
        }
    })
    .await
    .unwrap_or_else(|| panic!("the controller's /metrics: {}", controller.log_text()));
    let exported = exported_series(&exposition);
    for series in [
        "secretsync_syncs_total",
        "secretsync_provider_api_calls_total",
        "secretsync_reconcile_duration_seconds_bucket",
        "secretsync_secret_writes_total",
        "secretsync_managed_secrets",
        "secretsync_store_ready",
        "secretsync_workload_restarts_total",
    ] {
        assert!(
            exported.contains(series),
            "{series} not exported: {exposition}"
        );
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/secretsync-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(expressions.len() >= 10);
    if let Some(helm) = peers::helm() {
        let docs = render(&helm, &["--set", "metrics.prometheusRule.enabled=true"]);
        let rule = kind(&docs, "PrometheusRule")[0];
        expressions.extend(
            rule["spec"]["groups"][0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["expr"].as_str().unwrap().to_string()),
        );
    }
    let mut read = BTreeSet::new();
    for expr in &expressions {
        let names = metric_names(expr);
        if !expr.starts_with("absent(up") {
            assert!(!names.is_empty(), "{expr} reads no secretsync metric");
        }
        for name in names {
            assert!(exported.contains(&name), "{expr}: {name} is not exported");
            read.insert(name);
        }
    }
    // Each metric the README lists has a panel.
    for metric in [
        "secretsync_syncs_total",
        "secretsync_provider_api_calls_total",
        "secretsync_reconcile_duration_seconds_bucket",
        "secretsync_secret_writes_total",
        "secretsync_managed_secrets",
        "secretsync_store_ready",
        "secretsync_workload_restarts_total",
    ] {
        assert!(read.contains(metric), "no panel reads {metric}");
    }
}

/// Moving from ESO (README, "Moving from ESO"): ESO's chart installs its CRDs
/// as templates, so uninstalling the release deletes them, every
/// ExternalSecret, and through owner references every Secret ESO wrote.
/// With the CRDs kept first (the README's step 1), the uninstall leaves them,
/// and secretsync with `--eso-compat` takes over the very same Secrets. A
/// stand-in chart plays ESO's (ESO's CRD under a Helm release; its own
/// text is not copied here), installed with the real helm against the test
/// bed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_from_eso_in_the_readmes_order_keeps_every_secret_eso_wrote() {
    let Some(helm) = helm("moving_from_eso_in_the_readmes_order_keeps_every_secret_eso_wrote")
    else {
        return;
    };
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let kubeconfig_arg = kubeconfig.to_str().unwrap().to_string();

    // The stand-in chart: ESO's CRDs as templates, with annotations from
    // its values.
    let chart = dir.path().join("eso");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: external-secrets\nversion: 0.0.1\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "crds:\n  annotations: {}\n").unwrap();
    for name in [
        "externalsecrets",
        "secretstores",
        "clustersecretstores",
        "clusterexternalsecrets",
    ] {
        let text = std::fs::read_to_string(
            root().join(format!("crds/compat/{name}.external-secrets.io.yaml")),
        )
        .unwrap();
        let mut crd: Value = serde_yaml_ng::from_str(&text).unwrap();
        crd["metadata"]["annotations"] = json!("ANNOTATIONS");
        let template = serde_json::to_string(&crd)
            .unwrap()
            .replace("\"ANNOTATIONS\"", "{{ toJson .Values.crds.annotations }}");
        std::fs::write(chart.join(format!("templates/{name}.yaml")), template).unwrap();
    }
    let helm_in = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kubeconfig_arg.as_str()];
        all.extend_from_slice(args);
        run(&helm, &all)
    };
    let chart_arg = chart.to_str().unwrap().to_string();
    kubectl(&kubeconfig, &["create", "namespace", "external-secrets"]).await;
    kubectl(&kubeconfig, &["create", "namespace", "team"]).await;

    // What ESO left in a namespace: a store, an ExternalSecret, and the
    // Secret it owns.
    let client = server.client();
    let resource = |kind: &str, plural: &str| {
        kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("external-secrets.io", "v1", kind),
            plural,
        )
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let es_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "team",
        &resource("ExternalSecret", "externalsecrets"),
    );
    let eso_wrote = |uid: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "team",
                "labels": {"reconcile.external-secrets.io/managed": "true"},
                "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "name": "db", "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
            "data": {"password": "RXNvLW1vdmUtcHc="},
        }))
        .unwrap()
    };
    let leave_esos_objects = || async {
        let params = PatchParams::apply("external-secrets").force();
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "team",
            &resource("SecretStore", "secretstores"),
        )
        .patch(
            "fake",
            &params,
            &Patch::Apply(
                json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "fake"},
                "spec": {"provider": {"fake": {"data": [{"key": "db", "value": "Eso-move-pw"}]}}}}),
            ),
        )
        .await
        .unwrap();
        let es = es_api
            .patch(
                "db",
                &params,
                &Patch::Apply(
                    json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": {"name": "db"},
                    "spec": {"secretStoreRef": {"name": "fake"}, "refreshInterval": "1h",
                        "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}]}}),
                ),
            )
            .await
            .unwrap();
        let uid = es.metadata.uid.unwrap();
        secrets
            .create(&PostParams::default(), &eso_wrote(&uid))
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    };

    // The wrong order first: a plain uninstall takes the Secret with it.
    helm_in(&[
        "install",
        "external-secrets",
        &chart_arg,
        "-n",
        "external-secrets",
    ]);
    leave_esos_objects().await;
    helm_in(&["uninstall", "external-secrets", "-n", "external-secrets"]);
    assert!(
        secrets.get_opt("db").await.unwrap().is_none(),
        "a plain uninstall deletes the Secrets ESO owned: this is what the README's order prevents"
    );

    // The README's order: keep the CRDs, uninstall, install secretsync.
    helm_in(&[
        "install",
        "external-secrets",
        &chart_arg,
        "-n",
        "external-secrets",
    ]);
    let secret_uid = leave_esos_objects().await;
    helm_in(&[
        "upgrade",
        "external-secrets",
        &chart_arg,
        "-n",
        "external-secrets",
        "--reuse-values",
        "--set-json",
        r#"crds.annotations={"helm.sh/resource-policy":"keep"}"#,
    ]);
    let kept = kubectl(
        &kubeconfig,
        &[
            "get",
            "crd",
            "externalsecrets.external-secrets.io",
            "-o",
            r"jsonpath={.metadata.annotations.helm\.sh/resource-policy}",
        ],
    )
    .await;
    assert_eq!(kept, "keep");
    helm_in(&["uninstall", "external-secrets", "-n", "external-secrets"]);
    assert!(es_api.get_opt("db").await.unwrap().is_some());
    assert_eq!(
        secrets.get("db").await.unwrap().metadata.uid.as_deref(),
        Some(secret_uid.as_str())
    );

    // secretsync's chart with `crds.esoCompat: false` brings its own CRDs.
    kubectl(&kubeconfig, &["apply", "-f", "crds/"]).await;
    let mut controller = support::controller::RunningController::start(
        &kubeconfig,
        &["--no-leader-election", "--eso-compat"],
        &[],
    );
    let taken_over = support::cluster::eventually(Duration::from_secs(30), || async {
        let secret = secrets.get("db").await.ok()?;
        let managed = secret
            .metadata
            .labels
            .as_ref()?
            .get("secretsync.io/managed")
            .is_some_and(|v| v == "true");
        managed.then_some(secret)
    })
    .await
    .unwrap_or_else(|| panic!("never taken over:\n{}", controller.log_text()));
    assert_eq!(
        taken_over.metadata.uid.as_deref(),
        Some(secret_uid.as_str()),
        "the same Secret, never deleted"
    );
    assert_eq!(taken_over.data.unwrap()["password"].0, b"Eso-move-pw");
    assert!(controller.terminate().success());
    controller.assert_never_logged(&["Eso-move-pw"]);
}
