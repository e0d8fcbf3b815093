//! Files in, documents out: directories walked recursively (each file once,
//! symlink loops included), each file split into its YAML documents, each
//! document parsed on its own into JSON, refusing duplicate keys.
//!
//! A file is split at its `---` lines before parsing, so a syntax error or a
//! NUL byte in document 3 is reported as document 3, at its line, and the
//! documents before and after it are still read. YAML forbids a `---` at the
//! start of a line inside content, so splitting there never cuts a value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Files larger than this are refused (8 MiB, about 25,000 ExternalSecrets):
/// reading manifests costs memory many times their size (every document is
/// held as JSON, then as an object; measured 2026-12-06 on a debug build:
/// 5 MiB of ExternalSecrets peaked at 190 MiB, and a 50 MB file at about
/// 2.5 GiB), so the limit is what bounds `render`'s memory. No real manifest
/// comes near it: a single Kubernetes object is at most 1.5 MiB.
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;
/// All files of one run together (16 MiB), for the same reason.
pub const MAX_TOTAL_SIZE: u64 = 16 * 1024 * 1024;

/// One document of a file: its 1-based number (as kubectl counts them) and
/// its JSON form, or why it could not be read.
pub struct Document {
    pub number: usize,
    pub value: Result<Value, String>,
}

/// The manifest files under `path`, sorted so output order is stable. A file
/// named directly is read whatever its extension; in directories only
/// `.yaml`, `.yml` and `.json`. `seen` holds the canonical paths read so far.
pub fn manifest_files(
    path: &Path,
    seen: &mut BTreeSet<PathBuf>,
    problems: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match std::fs::metadata(path) {
        Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
        Ok(meta) if meta.is_dir() => {
            let before = files.len();
            walk(path, seen, problems, &mut files);
            if files.len() == before {
                problems.push(format!(
                    "{}: no .yaml, .yml or .json files in this directory",
                    path.display()
                ));
            }
        }
        Ok(_) => {
            if first_visit(path, seen) {
                files.push(path.to_path_buf());
            }
        }
    }
    files
}

fn walk(
    dir: &Path,
    seen: &mut BTreeSet<PathBuf>,
    problems: &mut Vec<String>,
    files: &mut Vec<PathBuf>,
) {
    if !first_visit(dir, seen) {
        return;
    }
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) => {
            problems.push(format!("{}: cannot list directory: {e}", dir.display()));
            return;
        }
    };
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, seen, problems, files);
        } else if is_manifest(&entry) && first_visit(&entry, seen) {
            files.push(entry);
        }
    }
}

/// Whether `path` (resolved through symlinks) has not been read yet.
fn first_visit(path: &Path, seen: &mut BTreeSet<PathBuf>) -> bool {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    seen.insert(canonical)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Reads a file as UTF-8 text, refusing oversized and binary files.
/// `total` counts the bytes read so far in this run, this file's added.
pub fn read_text(file: &Path, total: &mut u64) -> Result<String, String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(format!(
            "{}: {size} bytes is more than render reads from one file (at most {MAX_FILE_SIZE} bytes, 8 MiB): split it",
            file.display()
        ));
    }
    let sum = total.saturating_add(size);
    if sum > MAX_TOTAL_SIZE {
        return Err(format!(
            "{}: with it the manifests given total {sum} bytes, more than render reads in one run (at most {MAX_TOTAL_SIZE} bytes, 16 MiB): render fewer at a time",
            file.display()
        ));
    }
    // Read at most what was measured (plus one byte, to see a file growing).
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))?,
            MAX_FILE_SIZE + 1,
        ),
        &mut bytes,
    )
    .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!(
            "{}: more than render reads from one file (at most {MAX_FILE_SIZE} bytes, 8 MiB): split it",
            file.display()
        ));
    }
    *total = total.saturating_add(bytes.len() as u64);
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            file.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Every document of `text`, numbered, each parsed on its own.
pub fn documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    let mut number = 0;
    for chunk in split(text) {
        // A chunk is one document, unless a `...` end marker starts another.
        let mut parsed = 0;
        for document in serde_yaml_ng::Deserializer::from_str(chunk.text) {
            parsed += 1;
            number += 1;
            let value = UniqueKeys
                .deserialize(document)
                .map_err(|e| describe(&e, &chunk));
            let failed = value.is_err();
            out.push(Document { number, value });
            if failed {
                // The parser cannot resynchronise within a chunk; the next
                // chunk starts afresh.
                break;
            }
        }
        if parsed == 0 {
            // Only comments: still a document, as kubectl counts them.
            number += 1;
        }
    }
    out
}

/// A piece of the file between document markers, and its first line (1-based).
struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits at every line that is a document marker (`---` alone, or followed by
/// a space, tab or content on that line). Text before the first marker that
/// holds no content (comments, directives) belongs to the first document.
fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_number = index + 1;
        if is_marker(line) && offset > start {
            let before = &text[start..offset];
            if !chunks.is_empty() || has_content(before) {
                chunks.push(Chunk {
                    text: before,
                    first_line: start_line,
                });
                start = offset;
                start_line = line_number;
            }
        }
        offset += line.len();
    }
    let last = &text[start..];
    if !chunks.is_empty() || has_content(last) {
        chunks.push(Chunk {
            text: last,
            first_line: start_line,
        });
    }
    chunks
}

fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Whether a piece of YAML holds anything but blank lines, comments and directives.
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start_matches('\u{feff}').trim();
        !(line.is_empty() || line.starts_with('#') || line.starts_with('%'))
    })
}

/// A parser error, at its line in the whole file. The parser's own text
/// names positions within the chunk; only its description is kept.
fn describe(error: &serde_yaml_ng::Error, chunk: &Chunk<'_>) -> String {
    let text = error.to_string();
    let description = text
        .split(" at line ")
        .next()
        .and_then(|t| t.split(" at position ").next())
        .unwrap_or_default();
    // The reader's own errors (a NUL byte, bad encoding) carry no mark, only
    // "at position N" in their text.
    let position = text
        .split_once(" at position ")
        .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let index = position.or(error.location().map(|l| l.index()));
    match index {
        Some(index) => {
            let before = chunk.text.get(..index).unwrap_or(chunk.text);
            let line = chunk.first_line + before.matches('\n').count();
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("invalid YAML at line {line}, column {column}: {description}")
        }
        None => format!("invalid YAML: {description}"),
    }
}

/// Deserializes any YAML or JSON document into a JSON value, refusing a key
/// given twice in one mapping (which YAML forbids, and which would otherwise
/// silently keep the last one). Keys that are numbers or booleans become
/// strings, as kubectl's YAML-to-JSON conversion makes them.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        let mut keys = BTreeMap::new();
        while let Some(key) = map.next_key_seed(KeyText)? {
            if keys.insert(key.clone(), ()).is_some() {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?} (a key may appear once in a mapping)",
                    crate::sync::admission::shown(&key)
                )));
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (`!name`) are not part of a Kubernetes manifest",
        ))
    }
}

/// A mapping key as text.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean as a mapping key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(usize, Result<Value, String>)> {
        documents(text)
            .into_iter()
            .map(|d| (d.number, d.value))
            .collect()
    }

    #[test]
    fn documents_are_numbered_as_kubectl_counts_them() {
        let docs = read("a: 1\n---\nb: 2\n--- \nc: 3\n---\n# only a comment\n---\nd: 4\n");
        let numbers: Vec<_> = docs.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        assert_eq!(docs[3].1, Ok(Value::Null));
        assert_eq!(docs[4].1.as_ref().unwrap()["d"], 4);
        // A leading marker, comments or directives before it: still document 1.
        let docs = read("# header\n%YAML 1.2\n---\na: 1\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[0].1.as_ref().unwrap()["a"], 1);
    }

    #[test]
    fn an_error_in_one_document_keeps_the_others_and_names_its_line() {
        let docs = read("a: 1\n---\nb: 2\n---\nc: \"x\0y\"\n---\nd: [unclosed\n---\ne: 5\n");
        assert_eq!(docs.len(), 5);
        assert_eq!(docs[1].1.as_ref().unwrap()["b"], 2);
        let nul = docs[2].1.as_ref().unwrap_err();
        assert_eq!(docs[2].0, 3);
        assert!(nul.starts_with("invalid YAML at line 5"), "{nul}");
        let unclosed = docs[3].1.as_ref().unwrap_err();
        assert!(unclosed.starts_with("invalid YAML at line "), "{unclosed}");
        assert_eq!(docs[4].1.as_ref().unwrap()["e"], 5);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let docs = read("metadata:\n  name: a\n  name: b\n");
        let error = docs[0].1.as_ref().unwrap_err();
        assert!(error.contains("duplicate key \"name\""), "{error}");
        assert!(error.contains("at line 2"), "{error}");
        let docs = read("{\"a\": 1, \"a\": 2}");
        assert!(
            docs[0]
                .1
                .as_ref()
                .unwrap_err()
                .contains("duplicate key \"a\"")
        );
        // The same key in different mappings is fine.
        assert!(read("a: {x: 1}\nb: {x: 2}\n")[0].1.is_ok());
    }

    #[test]
    fn markers_inside_values_are_not_split() {
        // `---` not at the start of a line, or followed by other text, is content.
        let docs = read("a: |\n  ---\n  text\nb: '---x'\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].1.as_ref().unwrap()["a"], "---\ntext\n");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_fail_cleanly() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            bomb.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(read(&bomb)[0].1.is_err());
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(
            read(&deep)[0]
                .1
                .as_ref()
                .unwrap_err()
                .contains("recursion limit")
        );
    }
}
