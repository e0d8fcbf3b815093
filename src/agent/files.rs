//! What ends up on disk: relative file names, each with its mode and bytes.
//! Both the agent (which writes them) and the CSI provider (which hands them to
//! the driver) produce a [`FileSet`]; names that could leave the target
//! directory are refused here, before anything is written.

use std::collections::BTreeMap;
use std::fmt;

use crate::SecretValue;

/// Files by relative name (`a`, `dir/b`), in a stable order.
pub type FileSet = BTreeMap<FileName, SecretFile>;

/// One file's content and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFile {
    /// Permission bits, at most 0o777.
    pub mode: u32,
    pub contents: SecretValue,
}

/// A relative path that stays inside its directory: not empty, not absolute,
/// no `.` or `..` component, no empty component, no NUL, and no leading `..`
/// (the atomic writer's own names start with `..`, as the kubelet's do).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("file name {name:?} {problem}")]
pub struct FileNameError {
    pub name: String,
    pub problem: &'static str,
}

/// Longest file name component most Linux file systems take.
const MAX_COMPONENT: usize = 255;

impl FileName {
    pub fn new(name: &str) -> Result<Self, FileNameError> {
        let fail = |problem| {
            Err(FileNameError {
                name: name.to_string(),
                problem,
            })
        };
        if name.is_empty() {
            return fail("is empty");
        }
        if name.starts_with('/') {
            return fail("is absolute: it must be relative to the target directory");
        }
        if name.starts_with("..") {
            return fail("starts with \"..\", which is reserved and could leave the directory");
        }
        if name.contains('\0') {
            return fail("contains a NUL byte");
        }
        for component in name.split('/') {
            match component {
                "" => return fail("has an empty path component (\"//\" or a trailing \"/\")"),
                "." | ".." => {
                    return fail(
                        "has a \".\" or \"..\" component, which could leave the directory",
                    );
                }
                c if c.len() > MAX_COMPONENT => return fail("has a component over 255 bytes"),
                _ => {}
            }
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component: the name visible in the target directory.
    pub fn top(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file mode written as ASCP's `filePermission` ("0644", "0400") or a
/// kubelet-style octal string; at most 0o777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{text:?} is not an octal file mode such as \"0644\""))?;
    if mode > 0o777 {
        return Err(format!("{text:?} is above 0777"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_stay_inside_are_accepted() {
        for name in ["a", "a.txt", "dir/b", "My_Path_Secret", ".hidden", "a..b"] {
            assert!(FileName::new(name).is_ok(), "{name}");
        }
        assert_eq!(FileName::new("dir/b").unwrap().top(), "dir");
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for name in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "..data",
            "..x",
            "./a",
            "a//b",
            "a/",
            "a\0b",
        ] {
            assert!(FileName::new(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("400"), Ok(0o400));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
