//! The sync core end to end: manifests in, fake provider, desired Secret out.

use std::collections::BTreeMap;

use super::*;
use crate::api::{ExternalSecret, FakeProvider as FakeSpec};
use crate::provider::Provider;
use crate::provider::fake::FakeProvider;

const STORE: &str = r#"
data:
  - {key: db, value: '{"user":"app","password":"s3cret-pw","host":{"name":"db.local","ports":[5432,5433]}}'}
  - {key: db, version: v1, value: '{"user":"old","password":"old-pw"}'}
  - {key: token, value: 'dG9rZW4tdmFsdWU='}
  - {key: urltoken, value: '-_8='}
  - {key: plain, value: 'not json'}
  - {key: list, value: '[1,2]'}
  - {key: app/prod/api-key, value: 'k1'}
  - {key: app/prod/db-pass, value: 'k2'}
  - {key: app/dev/api-key, value: 'k3'}
  - {key: bin/blob, value: 'AGJpbmFyeQ=='}
  - {key: bin/json, value: '{"cert":"AGNlcnQ=","name":"bmFtZQ=="}'}
  - {key: names, value: '{"app/db":"1","tls.crt":"2","a b":"3"}'}
  - {key: clash, value: '{"app/db":"1","app_db":"2"}'}
"#;

fn provider() -> FakeProvider {
    FakeProvider::new(
        &serde_yaml_ng::from_str::<FakeSpec>(STORE).unwrap(),
        Default::default(),
    )
}

fn external_secret(spec: &str) -> ExternalSecret {
    let manifest = format!(
        "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: team-a, labels: {{team: a}}}}\nspec:\n  secretStoreRef: {{name: fake}}\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    serde_yaml_ng::from_str(&manifest).unwrap_or_else(|e| panic!("{e}\n{manifest}"))
}

async fn sync(es: &ExternalSecret) -> Result<DesiredSecret, SyncError> {
    sync_with(es, &TemplateSources::default()).await
}

async fn sync_with(
    es: &ExternalSecret,
    sources: &TemplateSources,
) -> Result<DesiredSecret, SyncError> {
    let fetched = provider().fetch_batch(&remote_requests(&es.spec)).await;
    desired_secret(es, &fetched, sources, &Default::default())
}

fn text(secret: &DesiredSecret) -> BTreeMap<&str, String> {
    secret
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.expose()).into_owned()))
        .collect()
}

#[tokio::test]
async fn data_with_property_version_and_decoding() {
    let es = external_secret(
        r#"
data:
  - {secretKey: user, remoteRef: {key: db, property: user}}
  - {secretKey: host, remoteRef: {key: db, property: host.name}}
  - {secretKey: port2, remoteRef: {key: db, property: host.ports.1}}
  - {secretKey: hostjson, remoteRef: {key: db, property: host}}
  - {secretKey: old, remoteRef: {key: db, property: password, version: v1}}
  - {secretKey: token, remoteRef: {key: token, decodingStrategy: Base64}}
  - {secretKey: auto, remoteRef: {key: token, decodingStrategy: Auto}}
  - {secretKey: url, remoteRef: {key: urltoken, decodingStrategy: Base64URL}}
  - {secretKey: raw, remoteRef: {key: plain}}
"#,
    );
    let secret = sync(&es).await.unwrap();
    let data = text(&secret);
    assert_eq!(data["user"], "app");
    assert_eq!(data["host"], "db.local");
    assert_eq!(data["port2"], "5433");
    assert_eq!(
        data["hostjson"],
        r#"{"name":"db.local","ports":[5432,5433]}"#
    );
    assert_eq!(data["old"], "old-pw");
    assert_eq!(data["token"], "token-value");
    assert_eq!(data["auto"], "token-value");
    assert_eq!(secret.data["url"].expose(), [0xfb, 0xff]);
    assert_eq!(data["raw"], "not json");
    assert_eq!(secret.name, "app");
    assert_eq!(secret.namespace, "team-a");
    assert_eq!(secret.type_, "Opaque");
    assert_eq!(
        secret.labels["team"], "a",
        "without a template the ExternalSecret's labels are copied"
    );
    assert_eq!(secret.labels[MANAGED_LABEL], "true");
    assert_eq!(
        secret.annotations[CONTENT_HASH_ANNOTATION],
        secret.content_hash
    );
}

#[tokio::test]
async fn force_sync_annotations_describe_the_external_secret_not_its_secret() {
    let mut es = external_secret("data:\n  - {secretKey: token, remoteRef: {key: token}}");
    es.metadata.annotations = Some(BTreeMap::from([
        ("secretsync.io/force-sync".to_string(), "1".to_string()),
        (
            "external-secrets.io/force-sync".to_string(),
            "2".to_string(),
        ),
        ("team.example/owner".to_string(), "a".to_string()),
    ]));
    let secret = sync(&es).await.unwrap();
    assert_eq!(secret.annotations["team.example/owner"], "a");
    assert!(!secret.annotations.contains_key("secretsync.io/force-sync"));
    assert!(
        !secret
            .annotations
            .contains_key("external-secrets.io/force-sync")
    );
}

#[tokio::test]
async fn one_request_per_distinct_remote_value() {
    let es = external_secret(
        r#"
data:
  - {secretKey: a, remoteRef: {key: db, property: user}}
  - {secretKey: b, remoteRef: {key: db, property: password}}
  - {secretKey: c, remoteRef: {key: db}}
  - {secretKey: d, remoteRef: {key: db, version: v1}}
dataFrom:
  - extract: {key: db}
"#,
    );
    assert_eq!(remote_requests(&es.spec).len(), 2);
    let provider = provider();
    provider.fetch_batch(&remote_requests(&es.spec)).await;
    assert_eq!(provider.calls().total("fake", "FetchBatch"), 1);
    assert_eq!(provider.calls().total("fake", "GetValue"), 2);
}

#[tokio::test]
async fn extract_find_and_rewrite() {
    let es = external_secret(
        r#"
dataFrom:
  - extract: {key: db, property: host}
    rewrite: [{regexp: {source: '^(.*)$', target: 'db_$1'}}]
  - find: {path: app/prod/, name: {regexp: 'key$'}}
  - find: {name: {regexp: '^app/'}}
    rewrite: [{regexp: {source: '^app/', target: ''}}, {transform: {template: '{{ .value | upper }}'}}]
data:
  - {secretKey: db_name, remoteRef: {key: db, property: user}}
"#,
    );
    let secret = sync(&es).await.unwrap();
    let data = text(&secret);
    assert_eq!(data["db_ports"], "[5432,5433]");
    // data[] wins over dataFrom for the same key.
    assert_eq!(data["db_name"], "app");
    assert_eq!(
        data["app_prod_api-key"], "k1",
        "find names are converted to valid keys"
    );
    assert!(
        !data.contains_key("app_prod_db-pass"),
        "name regexp filters"
    );
    assert_eq!(data["PROD_API-KEY"], "k1");
    assert_eq!(data["DEV_API-KEY"], "k3");
    assert_eq!(data["PROD_DB-PASS"], "k2");
}

#[tokio::test]
async fn template_replace_merge_metadata_and_type() {
    let replace = external_secret(
        r#"
target:
  name: app-config
  template:
    type: kubernetes.io/basic-auth
    metadata:
      labels: {app: '{{ .username }}'}
      annotations: {note: fixed}
    data:
      username: '{{ .username }}'
      password: '{{ .password | upper }}'
      url: 'postgres://{{ .username }}:{{ .password }}@db'
data:
  - {secretKey: username, remoteRef: {key: db, property: user}}
  - {secretKey: password, remoteRef: {key: db, property: password}}
  - {secretKey: extra, remoteRef: {key: plain}}
"#,
    );
    let secret = sync(&replace).await.unwrap();
    let data = text(&secret);
    assert_eq!(
        data.keys().copied().collect::<Vec<_>>(),
        ["password", "url", "username"]
    );
    assert_eq!(data["password"], "S3CRET-PW");
    assert_eq!(data["url"], "postgres://app:s3cret-pw@db");
    assert_eq!(secret.name, "app-config");
    assert_eq!(secret.type_, "kubernetes.io/basic-auth");
    assert_eq!(secret.labels["app"], "app");
    assert!(
        !secret.labels.contains_key("team"),
        "with a template its metadata is used instead"
    );
    assert_eq!(secret.annotations["note"], "fixed");

    let mut merge = replace.clone();
    merge.spec.target.template.as_mut().unwrap().merge_policy =
        crate::api::TemplateMergePolicy::Merge;
    let merged = text(&sync(&merge).await.unwrap())
        .into_keys()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(merged, ["extra", "password", "url", "username"]);

    let no_data_template = external_secret(
        "target: {template: {type: Opaque, metadata: {labels: {x: y}}}}\ndata: [{secretKey: raw, remoteRef: {key: plain}}]",
    );
    let secret = sync(&no_data_template).await.unwrap();
    assert_eq!(
        text(&secret)["raw"],
        "not json",
        "a template without data keeps the fetched data"
    );
}

#[tokio::test]
async fn template_from_config_map_and_literal() {
    let es = external_secret(
        r#"
target:
  template:
    templateFrom:
      - configMap: {name: tpl, items: [{key: config.yaml}, {key: pairs, templateAs: KeysAndValues}]}
      - literal: "lit_{{ .user }}: '{{ .user }}-literal'"
      - literal: "owner: '{{ .user }}'"
        target: Labels
dataFrom:
  - extract: {key: db}
"#,
    );
    let mut sources = TemplateSources::default();
    sources.config_maps.insert(
        "tpl".into(),
        [
            ("config.yaml".to_string(), "user: {{ .user }}\n".to_string()),
            (
                "pairs".to_string(),
                "A: '{{ .user }}'\nB: fixed".to_string(),
            ),
        ]
        .into(),
    );
    let secret = sync_with(&es, &sources).await.unwrap();
    let data = text(&secret);
    assert_eq!(data["config.yaml"], "user: app\n");
    assert_eq!(data["A"], "app");
    assert_eq!(data["B"], "fixed");
    assert_eq!(data["lit_app"], "app-literal");
    assert_eq!(secret.labels["owner"], "app");

    let error = sync(&es).await.unwrap_err();
    assert!(
        error.to_string().contains("ConfigMap \"tpl\" not found"),
        "{error}"
    );
}

#[tokio::test]
async fn same_input_same_hash_and_value_change_changes_it() {
    let es = external_secret("data: [{secretKey: u, remoteRef: {key: db, property: user}}]");
    let first = sync(&es).await.unwrap();
    assert_eq!(first.content_hash, sync(&es).await.unwrap().content_hash);
    let other = external_secret("data: [{secretKey: u, remoteRef: {key: db, property: password}}]");
    assert_ne!(first.content_hash, sync(&other).await.unwrap().content_hash);
}

/// Each failure is typed, names the reference, and never shows a value.
#[tokio::test]
async fn failures_name_the_reference_and_hide_values() {
    let cases = [
        (
            "data: [{secretKey: a, remoteRef: {key: nope}}]",
            "spec.data[0].remoteRef (remote key \"nope\"): remote key \"nope\" not found",
        ),
        (
            "data: [{secretKey: a, remoteRef: {key: db, version: v9}}]",
            "version \"v9\" of remote key \"db\" not found",
        ),
        (
            "data: [{secretKey: a, remoteRef: {key: db, property: host.nope}}]",
            "spec.data[0].remoteRef: property \"host.nope\" not found in remote key \"db\"",
        ),
        (
            "data: [{secretKey: a, remoteRef: {key: plain, property: x}}]",
            "spec.data[0].remoteRef: remote key \"plain\" is not JSON",
        ),
        (
            "data: [{secretKey: a, remoteRef: {key: db, decodingStrategy: Base64}}]",
            "value of remote key \"db\" is not valid base64",
        ),
        (
            "dataFrom: [{extract: {key: plain}}]",
            "spec.dataFrom[0].extract: remote key \"plain\" is not JSON",
        ),
        (
            "dataFrom: [{extract: {key: list}}]",
            "remote key \"list\" is not a JSON object",
        ),
        (
            "dataFrom: [{find: {name: {regexp: '('}}}]",
            "spec.dataFrom[0].find.name.regexp: invalid regular expression",
        ),
        (
            "dataFrom: [{extract: {key: db}, rewrite: [{regexp: {source: '^', target: 'bad key '}}]}]",
            "produced key \"bad key host\"",
        ),
        (
            "target: {template: {data: {url: \"x\\n{{ .password | mustFromJson }}\"}}}\ndata: [{secretKey: password, remoteRef: {key: db, property: password}}]",
            "spec.target.template.data.url: line 2, column",
        ),
    ];
    for (spec, expected) in cases {
        let error = sync(&external_secret(spec)).await.expect_err(spec);
        let shown = error.to_string();
        assert!(
            shown.contains(expected),
            "{spec}\n  got: {shown}\n  want: {expected}"
        );
        for value in ["s3cret-pw", "old-pw", "token-value", "not json", "db.local"] {
            assert!(!shown.contains(value), "{spec}: value leaked into {shown}");
        }
    }
}

#[test]
fn cluster_store_conditions() {
    let spec: crate::api::ClusterSecretStoreSpec = serde_yaml_ng::from_str(
        r#"
provider: {fake: {data: []}}
conditions:
  - namespaces: [team-a]
  - namespaceRegexes: ['^ci-']
  - namespaceSelector: {matchLabels: {secrets: allowed}}
"#,
    )
    .unwrap();
    let none = BTreeMap::new();
    let allowed: BTreeMap<String, String> = [("secrets".to_string(), "allowed".to_string())].into();
    assert!(cluster_store_admits(&spec, "team-a", &none));
    assert!(cluster_store_admits(&spec, "ci-42", &none));
    assert!(cluster_store_admits(&spec, "other", &allowed));
    assert!(!cluster_store_admits(&spec, "other", &none));
    let open: crate::api::ClusterSecretStoreSpec =
        serde_yaml_ng::from_str("provider: {fake: {}}").unwrap();
    assert!(cluster_store_admits(&open, "anything", &none));
}

#[tokio::test]
async fn null_byte_policy_fail_refuses_binary_values_naming_them() {
    // `AGJpbmFyeQ==` decodes to a NUL byte, then `binary`.
    let data = |policy: &str| {
        external_secret(&format!(
            "data:\n  - {{secretKey: blob, remoteRef: {{key: bin/blob, decodingStrategy: Base64{policy}}}}}"
        ))
    };
    // Unset and Ignore keep the bytes, as ESO does.
    for policy in ["", ", nullBytePolicy: Ignore"] {
        let secret = sync(&data(policy)).await.unwrap();
        assert_eq!(secret.data["blob"].expose(), b"\0binary");
    }
    let error = sync(&data(", nullBytePolicy: Fail"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "spec.data[0].remoteRef: the value of remote key \"bin/blob\" holds NUL bytes"
        ),
        "{error}"
    );
    // Without decoding, the base64 text has none.
    let text = external_secret(
        "data:\n  - {secretKey: blob, remoteRef: {key: bin/blob, nullBytePolicy: Fail}}",
    );
    assert_eq!(
        sync(&text).await.unwrap().data["blob"].expose(),
        b"AGJpbmFyeQ=="
    );

    let extract = external_secret(
        "dataFrom:\n  - extract: {key: bin/json, decodingStrategy: Base64, nullBytePolicy: Fail}",
    );
    let error = sync(&extract).await.unwrap_err().to_string();
    assert!(
        error.contains(
            "spec.dataFrom[0].extract: the value of key \"cert\" of remote key \"bin/json\""
        ),
        "{error}"
    );
    let find = external_secret(
        "dataFrom:\n  - find: {path: bin/, decodingStrategy: Auto, nullBytePolicy: Fail}",
    );
    let error = sync(&find).await.unwrap_err().to_string();
    assert!(
        error.contains("spec.dataFrom[0].find: the value of remote key \"bin/blob\""),
        "{error}"
    );
    // Neither the value nor its encoding reaches the message.
    for shown in [&error, &sync(&extract).await.unwrap_err().to_string()] {
        for value in ["\0", "AGJpbmFyeQ", "AGNlcnQ", "\\u0000"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
}

#[tokio::test]
async fn conversion_strategy_turns_names_into_keys_as_eso() {
    let keys = |secret: &DesiredSecret| secret.data.keys().cloned().collect::<Vec<_>>();
    // extract without rewrite: Default (also when unset) and Unicode.
    for (strategy, expected) in [
        ("", ["a_b", "app_db", "tls.crt"]),
        (
            ", conversionStrategy: Default",
            ["a_b", "app_db", "tls.crt"],
        ),
        (
            ", conversionStrategy: Unicode",
            ["a_U0020_b", "app_U002f_db", "tls.crt"],
        ),
    ] {
        let es = external_secret(&format!("dataFrom:\n  - extract: {{key: names{strategy}}}"));
        assert_eq!(keys(&sync(&es).await.unwrap()), expected, "{strategy}");
    }
    // Two names that become one key are an error; Unicode keeps them apart.
    let clash = external_secret("dataFrom:\n  - extract: {key: clash}");
    let error = sync(&clash).await.unwrap_err().to_string();
    assert!(
        error.contains("both become Secret key \"app_db\""),
        "{error}"
    );
    let apart =
        external_secret("dataFrom:\n  - extract: {key: clash, conversionStrategy: Unicode}");
    assert_eq!(
        keys(&sync(&apart).await.unwrap()),
        ["app_U002f_db", "app_db"]
    );
    // find: the remote names.
    let find =
        external_secret("dataFrom:\n  - find: {path: app/prod/, conversionStrategy: Unicode}");
    assert_eq!(
        keys(&sync(&find).await.unwrap()),
        [
            "app_U002f_prod_U002f_api-key",
            "app_U002f_prod_U002f_db-pass"
        ]
    );
}

mod generators {
    use super::*;
    use crate::SecretValue;

    fn generated(entries: &[(usize, &[(&str, &str)])]) -> GeneratedData {
        entries
            .iter()
            .map(|(i, values)| {
                let values = values
                    .iter()
                    .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
                    .collect();
                (*i, values)
            })
            .collect()
    }

    async fn sync_generated(
        es: &ExternalSecret,
        made: &GeneratedData,
    ) -> Result<DesiredSecret, SyncError> {
        let fetched = provider().fetch_batch(&remote_requests(&es.spec)).await;
        desired_secret_with_generated(
            es,
            &fetched,
            made,
            &TemplateSources::default(),
            &Default::default(),
        )
    }

    #[tokio::test]
    async fn generated_keys_merge_with_store_data_and_rewrites_apply() {
        let es = external_secret(
            "data:\n- {secretKey: user, remoteRef: {key: db, property: user}}\ndataFrom:\n- sourceRef: {generatorRef: {kind: Password, name: pw}}\n  rewrite:\n  - regexp: {source: '^', target: 'db_'}\n- sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: UUID, name: id}}",
        );
        assert!(es.spec.reads_a_store() && es.spec.has_generators());
        // Nothing made: refused, naming the entry.
        let error = sync(&es).await.unwrap_err().to_string();
        assert!(
            error.contains("spec.dataFrom[0].sourceRef.generatorRef"),
            "{error}"
        );
        let made = generated(&[(0, &[("password", "gen-pw-1")]), (1, &[("uuid", "u-1")])]);
        let secret = sync_generated(&es, &made).await.unwrap();
        assert_eq!(
            text(&secret),
            BTreeMap::from([
                ("db_password", "gen-pw-1".to_string()),
                ("user", "app".to_string()),
                ("uuid", "u-1".to_string()),
            ])
        );
    }

    #[tokio::test]
    async fn generators_alone_need_no_store_and_templates_see_their_keys() {
        let manifest = "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: team-a}\nspec:\n  dataFrom:\n  - sourceRef: {generatorRef: {kind: ECRAuthorizationToken, name: ecr}}\n  target:\n    template:\n      type: kubernetes.io/dockerconfigjson\n      data:\n        .dockerconfigjson: '{\"auths\":{\"{{ .proxy_endpoint }}\":{\"username\":\"{{ .username }}\",\"password\":\"{{ .password }}\"}}}'\n";
        let es: ExternalSecret = serde_yaml_ng::from_str(manifest).unwrap();
        assert!(!es.spec.reads_a_store());
        let made = generated(&[(
            0,
            &[
                ("username", "AWS"),
                ("password", "tok"),
                ("proxy_endpoint", "https://1.dkr.ecr"),
            ],
        )]);
        let secret = sync_generated(&es, &made).await.unwrap();
        assert_eq!(secret.type_, "kubernetes.io/dockerconfigjson");
        assert_eq!(
            text(&secret)[".dockerconfigjson"],
            r#"{"auths":{"https://1.dkr.ecr":{"username":"AWS","password":"tok"}}}"#
        );
    }

    #[test]
    fn bad_generator_refs_are_refused_naming_the_field() {
        let cases = [
            (
                "dataFrom:\n- sourceRef: {generatorRef: {kind: Vault, name: x}}",
                "spec.dataFrom[0].sourceRef.generatorRef.kind",
            ),
            (
                "dataFrom:\n- sourceRef: {generatorRef: {kind: UUID, name: ''}}",
                "spec.dataFrom[0].sourceRef.generatorRef.name",
            ),
            (
                "dataFrom:\n- sourceRef: {generatorRef: {apiVersion: x/v1, kind: UUID, name: a}}",
                "spec.dataFrom[0].sourceRef.generatorRef.apiVersion",
            ),
            (
                "dataFrom:\n- sourceRef: {storeRef: {name: other}}\n  extract: {key: db}",
                "spec.dataFrom[0].sourceRef.storeRef",
            ),
            (
                "dataFrom:\n- sourceRef: {generatorRef: {kind: UUID, name: a}}\n  extract: {key: db}",
                "cannot be combined with extract or find",
            ),
        ];
        for (spec, expected) in cases {
            let es = external_secret(spec);
            let error = check(&es).unwrap_err().to_string();
            assert!(error.contains(expected), "{spec}: {error}");
        }
        // Without a store, only generator entries are allowed.
        let manifest = "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: team-a}\nspec:\n  data:\n  - {secretKey: a, remoteRef: {key: db}}\n";
        let es: ExternalSecret = serde_yaml_ng::from_str(manifest).unwrap();
        let error = check(&es).unwrap_err().to_string();
        assert!(error.contains("spec.secretStoreRef.name"), "{error}");
    }
}
