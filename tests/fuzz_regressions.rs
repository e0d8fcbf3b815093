//! Every input kept under `fuzz/regressions/<target>/` (crashes the fuzzers
//! found, and inputs that crashed before the fix) and every seed under
//! `fuzz/seeds/<target>/`, replayed on stable through the very code the fuzz
//! targets run (`secretsync::fuzzing`), so they stay fixed. A target that
//! panics fails this test; one that hangs makes it time out.

use std::path::Path;

use secretsync::fuzzing;

/// A fuzz target's body.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("duration", fuzzing::duration),
    ("property", fuzzing::property),
    ("template", fuzzing::template),
    ("envelope", fuzzing::envelope),
    ("manifests", fuzzing::manifests),
];

#[test]
fn kept_inputs_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for kind in ["regressions", "seeds"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target}: {} panics", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 20, "only {replayed} inputs replayed");
}

#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, _) in TARGETS {
        let seeds = std::fs::read_dir(root.join(target))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(seeds > 0, "fuzz/seeds/{target} is empty");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("fuzz/fuzz_targets/{target}.rs"))
                .exists(),
            "no fuzz target {target}"
        );
    }
}
