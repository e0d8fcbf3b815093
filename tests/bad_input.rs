//! The bad-input corpus (`tests/bad-input/`): hostile and careless manifests,
//! each run through the built binary, each with the message it must get.
//!
//! # Corpus format
//!
//! One YAML file per case, `tests/bad-input/NNN-short-name.yaml`. Every object
//! of case NNN is named with the prefix `case-NNN` (stores too) and lives in
//! namespace `bad` unless the case is about namespaces, so all cases can be
//! applied together to one namespace; each case brings the (fake-provider)
//! stores it needs. The file starts with comment lines:
//!
//! - `# expect: TEXT` (required): a substring of the error reported, the
//!   field path and the message without the file/document prefix, so the same
//!   text fits a status condition.
//! - `# controller: TEXT` (optional): the substring the object's Ready (or,
//!   for a SealedSecret, Synced) condition message must hold in the controller
//!   when it differs from `expect`; or `# controller: skip WHY` for cases that
//!   are not storable objects (YAML syntax, duplicate keys, NUL bytes, List
//!   handling, names the API server refuses, ...).
//! - `# value: TEXT` (optional, repeatable): a secret value the case uses;
//!   it must never appear in any output, nor lowercased, uppercased, base64
//!   (standard or URL-safe) or JSON-quoted.
//! - `# command: unseal` (optional): run through `secretsync unseal -i
//!   tests/bad-input/sealing-identity.txt -f FILE` (SealedSecrets) instead of
//!   `secretsync render -f FILE -f tests/bad-input/good.yaml`.
//! - `# args: ARGS` (optional): more `render` arguments; `{out}` stands for a
//!   fresh directory, and nothing may be written anywhere but inside it.
//! - `# renders: NAME` (optional, repeatable): a Secret the case's own valid
//!   objects still produce beside the bad one.
//! - `# exit: N` (optional): the exit code, when not 1.
//! - `# alone` (optional): run without `good.yaml` (a case about an input that
//!   holds nothing to render).
//!
//! `good.yaml` holds valid objects run beside every case (and beside the whole
//! corpus at once): they must render whatever the cases do.
//! `sealing-identity.txt` is the age identity the SealedSecret cases were
//! sealed to (test data only; case 090 is sealed to another key).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use support::corpus::{Case, GOOD, IDENTITY, assert_no_value, corpus};

fn secretsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(args)
        // Every log line is emitted, so a value in any of them would be seen.
        .env("RUST_LOG", "trace")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rendered_names(stdout: &str) -> BTreeSet<String> {
    serde_yaml_ng::Deserializer::from_str(stdout)
        .map(|doc| Secret::deserialize(doc).expect("each document is a Secret"))
        .filter_map(|s| s.metadata.name)
        .collect()
}

/// Files under `root`, recursively.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn corpus_is_big_enough_and_covers_every_kind() {
    let cases = corpus();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let all: String = cases
        .iter()
        .map(|c| std::fs::read_to_string(&c.file).unwrap_or_default())
        .collect();
    for kind in [
        "kind: ExternalSecret",
        "kind: SecretStore",
        "kind: ClusterSecretStore",
        "kind: SealedSecret",
    ] {
        assert!(all.contains(kind), "no case with {kind}");
    }
    let numbers: BTreeSet<_> = cases
        .iter()
        .map(|c| c.file.file_name().unwrap().to_string_lossy()[..3].to_string())
        .collect();
    assert_eq!(numbers.len(), cases.len(), "case numbers are unique");
}

/// Each case on its own (beside `good.yaml`): its message, its exit code, no
/// panic, no value anywhere, the good objects still rendered.
#[test]
fn every_case_gets_its_message() {
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let file = case.file.to_str().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let output = if case.unseal {
            secretsync(&["unseal", "-i", IDENTITY, "-f", file])
        } else {
            let mut args = vec!["render".to_string(), "-f".into(), file.into()];
            if !case.alone {
                args.extend(["-f".into(), GOOD.into()]);
            }
            args.extend(
                case.args
                    .iter()
                    .map(|a| a.replace("{out}", out.to_str().unwrap())),
            );
            secretsync(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        let mut problem = |message: String| failures.push(format!("{name}: {message}\n{stderr}"));
        if stderr.contains("panicked") || output.status.code() == Some(101) {
            problem("panicked".into());
            continue;
        }
        if output.status.code() != Some(case.exit) {
            problem(format!(
                "exit code {:?}, want {}",
                output.status.code(),
                case.exit
            ));
        }
        if !stderr.contains(&case.expect) {
            problem(format!("want {:?}", case.expect));
        }
        let mut all_output = format!("{stdout}\n{stderr}");
        if out.exists() {
            for written in files_under(&out) {
                all_output.push_str(&std::fs::read_to_string(written).unwrap());
            }
        }
        assert_no_value(&name, &all_output, &case.values);
        if !case.args.is_empty() {
            let stray: Vec<_> = files_under(scratch.path())
                .into_iter()
                .filter(|p| !p.starts_with(&out))
                .collect();
            assert!(
                stray.is_empty(),
                "{name}: written outside --out-dir: {stray:?}"
            );
        }
        if !case.unseal && case.args.is_empty() {
            let names = rendered_names(&stdout);
            if !case.alone && !names.contains("case-good") {
                problem("the good objects beside it did not render".into());
            }
            for want in &case.renders {
                if !names.contains(want) {
                    problem(format!("{want} did not render"));
                }
            }
            let number = &name[..3];
            let own: Vec<_> = names
                .iter()
                .filter(|n| n.starts_with(&format!("case-{number}")) && !case.renders.contains(n))
                .collect();
            if !own.is_empty() {
                problem(format!("a bad object rendered anyway: {own:?}"));
            }
        }
        if case.unseal && !stdout.is_empty() {
            problem("unseal printed a Secret for a bad SealedSecret".into());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The whole corpus in one run, as a GitOps directory would be rendered:
/// every message is there, the good objects render, nothing panics or leaks.
#[test]
fn the_whole_corpus_at_once() {
    let cases: Vec<Case> = corpus()
        .into_iter()
        .filter(|c| !c.unseal && !c.alone && c.args.is_empty())
        .collect();
    let mut args = vec!["render", "-f", GOOD];
    let files: Vec<String> = cases
        .iter()
        .map(|c| c.file.to_str().unwrap().to_string())
        .collect();
    for file in &files {
        args.extend(["-f", file.as_str()]);
    }
    let output = secretsync(&args);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for case in &cases {
        assert!(
            stderr.contains(&case.expect),
            "{}: want {:?}\n{stderr}",
            case.file.display(),
            case.expect
        );
    }
    let names = rendered_names(&stdout);
    assert!(names.contains("case-good"), "{names:?}");
    for case in &cases {
        for want in &case.renders {
            assert!(names.contains(want), "{want}: {names:?}");
        }
    }
    let values: Vec<String> = cases.iter().flat_map(|c| c.values.clone()).collect();
    assert_no_value("the whole corpus", &format!("{stdout}\n{stderr}"), &values);
}
