//! The bodies of the fuzz targets (`fuzz/`), here so that the replay test
//! (`tests/fuzz_regressions.rs`) runs exactly the same code on stable for
//! every input kept in `fuzz/regressions/`. Each takes arbitrary bytes and
//! must neither panic nor hang; each checks what must hold besides.

use std::path::Path;
use std::sync::LazyLock;

use crate::SecretValue;
use crate::api::{GoDuration, SealedScope};
use crate::sealed::keys::BoxedIdentity;
use crate::sealed::{Binding, parse_identities, unseal};
use crate::template::{Context, Template};

/// Durations: whatever parses prints back to the same duration, and fits
/// `std::time::Duration` and Go's limit.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = text.parse::<GoDuration>() {
        let printed = duration.to_string();
        assert_eq!(printed.parse::<GoDuration>(), Ok(duration), "{printed}");
        assert!(duration <= GoDuration::MAX);
        let _ = duration.to_std();
        let _ = duration.saturating_mul_f64(1.1);
    }
}

/// Property paths: the first line is the path, the rest the JSON value.
pub fn property(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, json) = text.split_once('\n').unwrap_or((&text, "{}"));
    let _ = crate::sync::json_property(&SecretValue::from(json), path);
}

/// Templates: parsed and rendered with a small context. Inputs that only
/// measure the template's own cost (`range` over a number, `repeat`, `until`)
/// are left to the render deadline and size cap, not to the fuzzer.
pub fn template(data: &[u8]) {
    // Slow by design (key generation, password hashing); loops and repeats
    // are in, bounded by the render limits below.
    const EXPENSIVE: &[&str] = &["htpasswd", "genPrivateKey", "bcrypt", "derivePassword"];
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 4096 || EXPENSIVE.iter().any(|f| text.contains(f)) {
        return;
    }
    let mut context = Context::new();
    context.insert("password", SecretValue::from("fuzz-Pa55word"));
    context.insert("json", SecretValue::from(r#"{"user":"app","list":[1,2]}"#));
    context.insert("b64", SecretValue::from("c2VjcmV0"));
    let limits = crate::template::RenderLimits {
        timeout: std::time::Duration::from_millis(200),
        max_output: 1 << 20,
    };
    if let Ok(mut template) = Template::parse(text) {
        let _ = template.render(&context, &mut limits.start());
    }
}

/// The age identity of `tests/bad-input/sealing-identity.txt`, which the
/// envelope seeds were sealed to (test data only).
const IDENTITY: &str = "AGE-SECRET-KEY-1HCPNVQYK83TMUWQZM89CDHG0N90DJ4ZFURL35W07ZVYDGMEA04KQ538Z55";

static IDENTITIES: LazyLock<Vec<BoxedIdentity>> =
    LazyLock::new(|| parse_identities(IDENTITY, "fuzz identity").unwrap_or_default());

/// Sealed values: any bytes as an envelope, decrypted against one binding;
/// and any text as a SealedSecret manifest.
pub fn envelope(data: &[u8]) {
    let binding = Binding {
        scope: SealedScope::Strict,
        namespace: "fuzz".into(),
        name: "fuzz".into(),
        key: "value".into(),
    };
    let _ = unseal(data, &IDENTITIES, &binding);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(sealed) = crate::sealed::manifest::parse_sealed(text, "fuzz")
    {
        let _ = crate::sealed::manifest::unseal_all(
            &sealed,
            &IDENTITIES,
            &crate::template::RenderLimits::default(),
        );
    }
}

/// Manifest loading: any text as a `render` input file; every error prints.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = crate::render::load_text(text, Path::new("fuzz.yaml"), "default");
    for error in &loaded.errors {
        let _ = error.to_string();
    }
}
