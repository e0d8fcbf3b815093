//! The bad-input corpus (`tests/bad-input/`), as data: what each case is and
//! what it must get. `tests/bad_input.rs` describes the format and runs the
//! corpus through the binary; `tests/bad_input_controller.rs` through the
//! controller.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

pub const GOOD: &str = "tests/bad-input/good.yaml";
pub const IDENTITY: &str = "tests/bad-input/sealing-identity.txt";

/// What the controller must say about a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InController {
    /// The same text as `expect`.
    Same,
    /// Another text.
    Says(String),
    /// Not run through the controller, and why.
    Skip(String),
}

pub struct Case {
    pub file: PathBuf,
    pub expect: String,
    pub controller: InController,
    pub values: Vec<String>,
    pub unseal: bool,
    pub args: Vec<String>,
    pub renders: Vec<String>,
    pub exit: i32,
    pub alone: bool,
}

impl Case {
    /// `NNN` of `NNN-short-name.yaml`.
    pub fn number(&self) -> String {
        self.file.file_name().unwrap().to_string_lossy()[..3].to_string()
    }
}

pub fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.len() > 4
                && name[..3].bytes().all(|b| b.is_ascii_digit())
                && name.ends_with(".yaml")
        })
        .collect();
    files.sort();
    files.into_iter().map(|file| parse_case(&file)).collect()
}

fn parse_case(file: &Path) -> Case {
    let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
    let mut case = Case {
        file: file.to_path_buf(),
        expect: String::new(),
        controller: InController::Same,
        values: Vec::new(),
        unseal: false,
        args: Vec::new(),
        renders: Vec::new(),
        exit: 1,
        alone: false,
    };
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim_start();
        let (key, value) = line
            .split_once(':')
            .map_or((line, ""), |(k, v)| (k, v.trim()));
        match key {
            "expect" => case.expect = value.to_string(),
            "controller" => {
                case.controller = match value.strip_prefix("skip") {
                    Some(why) => InController::Skip(why.trim().to_string()),
                    None => InController::Says(value.to_string()),
                }
            }
            "value" => case.values.push(value.to_string()),
            "command" => case.unseal = value == "unseal",
            "args" => case.args = value.split_whitespace().map(String::from).collect(),
            "renders" => case.renders.push(value.to_string()),
            "exit" => case.exit = value.parse().unwrap(),
            "alone" => case.alone = true,
            _ => {}
        }
    }
    assert!(
        !case.expect.is_empty(),
        "{}: no `# expect:` line",
        file.display()
    );
    let number = &file.file_name().unwrap().to_string_lossy()[..3];
    assert!(
        !text.contains("name:") || text.contains(&format!("case-{number}")),
        "{}: objects are named case-{number}...",
        file.display()
    );
    case
}

/// Every form of `value` that must not be seen.
pub fn forms(value: &str) -> Vec<String> {
    vec![
        value.to_string(),
        value.to_lowercase(),
        value.to_uppercase(),
        STANDARD.encode(value),
        URL_SAFE.encode(value),
        serde_json::to_string(value).unwrap(),
    ]
}

pub fn assert_no_value(what: &str, output: &str, values: &[String]) {
    for value in values {
        for form in forms(value) {
            assert!(
                !output.contains(&form),
                "{what}: a value leaked (as {form:?}):\n{output}"
            );
        }
    }
}
