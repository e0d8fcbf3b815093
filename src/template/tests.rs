use std::time::{Duration, Instant};

use super::*;

fn context(pairs: &[(&str, &str)]) -> Context {
    let mut context = Context::new();
    for (k, v) in pairs {
        context.insert(*k, SecretValue::from(*v));
    }
    context
}

fn try_render(text: &str, ctx: &Context) -> Result<String, TemplateError> {
    render(text, ctx, &mut Budget::unlimited())
        .map(|v| String::from_utf8_lossy(v.expose()).into_owned())
}

fn render_with(text: &str, pairs: &[(&str, &str)]) -> String {
    try_render(text, &context(pairs)).unwrap_or_else(|e| panic!("{text}: {e}"))
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
fn binary_values_come_out_unchanged() {
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let mut ctx = Context::new();
    ctx.insert("bin", SecretValue::new(bytes.clone()));
    let out = render("{{ .bin }}", &ctx, &mut Budget::unlimited()).unwrap();
    assert_eq!(out.expose(), bytes.as_slice());
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
fn refused_functions_say_why() {
    for name in ["env", "expandenv", "getHostByName"] {
        let error = Template::parse(&format!("{{{{ {name} \"HOME\" }}}}"))
            .err()
            .expect("must fail");
        let shown = error.to_string();
        assert!(
            shown.contains(&format!("{name:?} is not available")),
            "{shown}"
        );
    }
}

#[test]
fn missing_key_is_an_error() {
    let error = try_render("{{ .nope }}", &context(&[("user", "x")])).unwrap_err();
    assert!(
        error.to_string().contains("\"nope\" is not in the data"),
        "{error}"
    );
    assert!(error.location.is_some());
}

/// Every form of `secret` a message could carry it in.
fn forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        secret.to_string(),
        secret.to_lowercase(),
        secret.to_uppercase(),
        b64(secret),
        b64(&secret.to_lowercase()),
        serde_json::to_string(secret).unwrap(),
        hex::encode(secret),
        // A fragment, as a truncating message would show.
        secret.chars().skip(2).take(8).collect(),
        secret.to_lowercase().chars().skip(2).take(8).collect(),
    ]
}

#[test]
fn errors_never_carry_a_value_in_any_form() {
    let secret = "HunTer2-Super-Secret";
    let json = r#"{"password":"Inner-JSON-Secret-9"}"#;
    let ctx = context(&[("pw", secret), ("json", json), ("n", "5")]);
    let templates = [
        "{{ fail (.pw | lower) }}",
        "{{ .pw | upper | fail }}",
        "{{ fail (.pw | b64enc) }}",
        "{{ fail (toJson .) }}",
        "{{ fail (.pw | quote) }}",
        "{{ lt (.pw | lower) 3 }}",
        "{{ if lt .pw 3 }}x{{ end }}",
        "{{ if lt (.json | fromJson) 3 }}x{{ end }}",
        "{{ range .pw }}x{{ end }}",
        "{{ range $i, $e := (.pw | lower) }}{{ end }}",
        "{{ index .pw 99 }}",
        "{{ index . .pw }}",
        "{{ index . (.pw | lower) }}",
        "{{ len (.pw | len) }}",
        "{{ .pw.field }}",
        "{{ (.json | fromJson).password.x }}",
        "{{ add 1 (.pw | lower) }}",
        "{{ atoi (.pw | lower) }}",
        "{{ regexMatch (.pw | lower) \"x\" }}",
        "{{ printf \"%d\" .pw | fail }}",
        "{{ call .pw }}",
        "{{ slice (.pw | lower) 99 }}",
        "{{ repeat 99999999 (.pw | lower) }}",
        "{{ get (.pw | lower) \"k\" }}",
        "{{ dig \"a\" (.pw | lower) }}",
        "{{ .pw | b64dec | fail }}",
    ];
    for text in templates {
        let Err(error) = try_render(text, &ctx) else {
            continue;
        };
        let shown = format!("{error} {error:?}");
        for form in forms(secret).iter().chain(&forms("Inner-JSON-Secret-9")) {
            assert!(
                !shown.contains(form.as_str()),
                "{text}: {shown} holds {form:?}"
            );
        }
        assert!(error.location.is_some(), "{text}: {shown} has no position");
    }
}

#[test]
fn a_failing_function_is_named() {
    let ctx = context(&[("pw", "x")]);
    let error = try_render("text {{ .pw | b64enc | fail }}", &ctx).unwrap_err();
    assert!(
        error.to_string().contains("function \"fail\" failed"),
        "{error}"
    );
    let error = try_render("{{ lt .pw 3 }}", &ctx).unwrap_err();
    assert!(
        error.to_string().contains("function \"lt\" failed"),
        "{error}"
    );
    assert_eq!(error.location.as_ref().unwrap().snippet, "lt .pw 3");
}

#[test]
fn the_deadline_stops_a_runaway_template() {
    let limits = RenderLimits {
        timeout: Duration::from_millis(200),
        max_output: usize::MAX,
    };
    let started = Instant::now();
    let mut budget = limits.start();
    let error = render(
        "{{ range 10000 }}{{ range 10000 }}{{ len \"x\" }}{{ end }}{{ end }}",
        &Context::new(),
        &mut budget,
    )
    .unwrap_err();
    assert!(error.to_string().contains("deadline"), "{error}");
    assert!(error.to_string().contains("200ms"), "{error}");
    // Stopped by itself, long before the loop could have finished.
    assert!(started.elapsed() < Duration::from_secs(60));
    // The budget is spent: the next template of the same object fails at once.
    let error = render("ok", &Context::new(), &mut budget).unwrap_err();
    assert!(error.to_string().contains("deadline"), "{error}");
}

#[test]
fn the_output_cap_is_shared_by_an_objects_templates() {
    let limits = RenderLimits {
        timeout: Duration::from_secs(600),
        max_output: 100,
    };
    let mut budget = limits.start();
    let error = render("{{ range 1000 }}x{{ end }}", &Context::new(), &mut budget).unwrap_err();
    assert!(
        error.to_string().contains("100-byte output limit"),
        "{error}"
    );

    let mut budget = limits.start();
    render("{{ repeat 60 \"x\" }}", &Context::new(), &mut budget).unwrap();
    let error = render("{{ repeat 60 \"x\" }}", &Context::new(), &mut budget).unwrap_err();
    assert!(error.to_string().contains("output limit"), "{error}");
}
