use super::*;

fn context(pairs: &[(&str, &str)]) -> Context {
    let mut context = Context::new();
    for (k, v) in pairs {
        context.insert(*k, SecretValue::from(*v));
    }
    context
}

fn render_with(text: &str, pairs: &[(&str, &str)]) -> String {
    render(text, &context(pairs)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn plain_reference_and_pipeline() {
    assert_eq!(
        render_with(
            "{{ .user }}:{{ .pass }}",
            &[("user", "app"), ("pass", "pw")]
        ),
        "app:pw"
    );
    assert_eq!(
        render_with("{{ .user | upper | quote }}", &[("user", "app")]),
        "\"APP\""
    );
}

#[test]
fn every_function_users_write() {
    let ctx = [
        ("user", "admin"),
        ("b64", "aGVsbG8="),
        (
            "json",
            r#"{"host":"db.local","port":5432,"tags":["a","b"]}"#,
        ),
        ("padded", "  x  "),
        ("empty", ""),
        ("multi", "a\nb"),
    ];
    let cases = [
        ("{{ .user | b64enc }}", "YWRtaW4="),
        ("{{ .b64 | b64dec }}", "hello"),
        ("{{ (.json | fromJson).host }}", "db.local"),
        ("{{ (.json | fromJson).port }}", "5432"),
        ("{{ dict \"u\" .user | toJson }}", r#"{"u":"admin"}"#),
        ("{{ .user | upper }}", "ADMIN"),
        ("{{ \"ABC\" | lower }}", "abc"),
        ("{{ .padded | trim }}", "x"),
        ("{{ .empty | default \"fallback\" }}", "fallback"),
        ("{{ .user | default \"fallback\" }}", "admin"),
        ("{{ .user | quote }}", "\"admin\""),
        ("{{ \"a\\\"b\" | quote }}", r#""a\"b""#),
        ("{{ .user | replace \"min\" \"MIN\" }}", "adMIN"),
        ("{{ .multi | indent 2 }}", "  a\n  b"),
        ("x:{{ .multi | nindent 2 }}", "x:\n  a\n  b"),
        (
            "{{ .user | sha256sum }}",
            "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918",
        ),
        ("{{ get (dict \"k\" \"v\") \"k\" }}", "v"),
        ("{{ get (.json | fromJson) \"host\" }}", "db.local"),
        ("{{ printf \"%s@%s\" .user \"host\" }}", "admin@host"),
        ("{{ index (.json | fromJson).tags 1 }}", "b"),
    ];
    for (text, expected) in cases {
        assert_eq!(render_with(text, &ctx), expected, "template {text}");
    }
}

#[test]
fn parse_error_has_position() {
    let error = Template::parse("line one\n{{ if .user }}open")
        .err()
        .expect("must fail");
    let location = error.location.clone().expect("a position");
    assert_eq!(location.line, 2, "{error}");
}

#[test]
fn unknown_function_is_an_error() {
    let error = Template::parse("{{ .user | nosuchfunc }}")
        .err()
        .expect("must fail");
    assert!(error.to_string().contains("nosuchfunc"), "{error}");
}

#[test]
fn exec_error_has_position_and_no_value() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let error = render("ok\n  {{ .pass | b64dec }}", &context(&[("pass", secret)])).unwrap_err();
    let location = error.location.clone().expect("a position");
    assert_eq!(location.line, 2);
    assert!(
        location.snippet.contains("b64dec") || location.snippet.contains(".pass"),
        "{location}"
    );
    assert!(!error.to_string().contains(secret), "{error}");
}

#[test]
fn values_quoted_by_gtmpl_are_scrubbed() {
    // gtmpl's comparison error prints both operands.
    let secret = "hunter2-super-secret";
    let json = r#"{"password":"inner-json-secret"}"#;
    let ctx = context(&[("pass", secret), ("json", json)]);
    for text in [
        "{{ if lt .pass 3 }}x{{ end }}",
        "{{ if lt (.json | fromJson) 3 }}x{{ end }}",
        "{{ len 3 }}",
        "{{ index .pass 99 }}",
    ] {
        if let Err(error) = render(text, &ctx) {
            let shown = error.to_string();
            assert!(!shown.contains(secret), "{text}: {shown}");
            assert!(!shown.contains("inner-json-secret"), "{text}: {shown}");
        }
    }
    let error = render("{{ if lt .pass 3 }}x{{ end }}", &ctx).unwrap_err();
    assert!(error.to_string().contains(REDACTED), "{error}");
}

#[test]
fn missing_key_is_an_error() {
    let error = render("{{ .nope }}", &context(&[("user", "x")])).unwrap_err();
    assert!(
        error.to_string().contains("\"nope\" is not in the data"),
        "{error}"
    );
    assert!(error.location.is_some());
}
