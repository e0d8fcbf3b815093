//! The kubelet's atomic-write convention for a directory of files, so a reader
//! never sees a partial or missing file and sees a set of files change at once:
//!
//! ```text
//! DIR/..2026_01_31_12_00_00.Xy12ab/   one generation, files written and synced
//! DIR/..data -> ..2026_01_31_12_00_00.Xy12ab   swapped by rename(2)
//! DIR/name   -> ..data/name           every visible name, through ..data
//! ```
//!
//! A write builds a new generation, points `..data_tmp` at it, renames
//! `..data_tmp` over `..data` (atomic), adds or removes the visible symlinks,
//! then removes the old generation after a short grace, so a reader whose path
//! walk was already inside the old directory still finds its file.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{FileName, FileSet, SecretFile};
use crate::SecretValue;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// Files larger than this are not read back when comparing with what is on
/// disk (Secrets Manager's own limit is 64 KiB).
const MAX_READ_BACK: u64 = 4 * 1024 * 1024;

/// Writes file sets into one directory. Not for concurrent use on one directory.
pub struct AtomicWriter {
    dir: PathBuf,
    grace: Duration,
}

impl AtomicWriter {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            grace: Duration::from_millis(500),
        }
    }

    /// How long the old generation stays after the swap (default 500 ms).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of the current generation, or `None` if nothing was written yet.
    pub fn current(&self) -> io::Result<Option<FileSet>> {
        let generation = match fs::read_link(self.dir.join(DATA)) {
            Ok(target) => self.dir.join(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut files = FileSet::new();
        read_tree(&generation, "", &mut files)?;
        Ok(Some(files))
    }

    /// Replaces the directory's files with `files`, atomically. Does nothing
    /// (and returns `false`) when the current generation already holds exactly
    /// these files with these modes.
    pub fn write(&self, files: &FileSet) -> io::Result<bool> {
        let current = self.current()?;
        if current.as_ref() == Some(files) {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir)?;
        let new_names: BTreeSet<&str> = files.keys().map(FileName::top).collect();
        self.check_visible_names(&new_names)?;

        let generation = self.new_generation(files)?;
        let generation_name = generation
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("a generation directory has a name"))?;
        let old_generation = fs::read_link(self.dir.join(DATA)).ok();

        // Swap ..data to the new generation.
        let tmp = self.dir.join(DATA_TMP);
        remove_if_exists(&tmp)?;
        symlink(&generation_name, &tmp)?;
        fs::rename(&tmp, self.dir.join(DATA))?;

        // Visible names: add the new ones, drop those no longer written.
        for name in &new_names {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                let tmp = self.dir.join(format!("{DATA_TMP}.{name}"));
                remove_if_exists(&tmp)?;
                symlink(Path::new(DATA).join(name), &tmp)?;
                fs::rename(&tmp, &link)?;
            }
        }
        if let Some(old) = &current {
            for name in old.keys().map(FileName::top) {
                if !new_names.contains(name) {
                    remove_if_exists(&self.dir.join(name))?;
                }
            }
        }
        sync_dir(&self.dir)?;

        if let Some(old) = old_generation.filter(|old| *old != generation_name) {
            std::thread::sleep(self.grace);
            fs::remove_dir_all(self.dir.join(old))?;
        }
        Ok(true)
    }

    /// A visible name in the way that is not our symlink through `..data`
    /// would be clobbered: refuse instead.
    fn check_visible_names(&self, names: &BTreeSet<&str>) -> io::Result<()> {
        for name in names {
            let path = self.dir.join(name);
            match fs::read_link(&path) {
                Ok(target) if target == Path::new(DATA).join(name) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{} exists and is not a symlink into {DATA}: refusing to replace it",
                            path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A new timestamped directory holding every file, written and synced.
    fn new_generation(&self, files: &FileSet) -> io::Result<PathBuf> {
        let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S");
        let dir = tempfile::Builder::new()
            .prefix(&format!("..{stamp}."))
            .permissions(fs::Permissions::from_mode(0o755))
            .tempdir_in(&self.dir)?
            .keep();
        let written = files
            .iter()
            .try_for_each(|(name, file)| write_file(&dir.join(name.as_str()), file));
        if let Err(e) = written.and_then(|()| sync_dir(&dir)) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(dir)
    }
}

fn write_file(path: &Path, file: &SecretFile) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(path)?;
    out.write_all(file.contents.expose())?;
    // The umask may have cleared bits at creation: set the exact mode.
    out.set_permissions(fs::Permissions::from_mode(file.mode))?;
    out.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every regular file under `dir`, by its name relative to the generation.
fn read_tree(dir: &Path, prefix: &str, files: &mut FileSet) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            read_tree(&entry.path(), &relative, files)?;
        } else if meta.is_file() && meta.len() <= MAX_READ_BACK {
            let Ok(file_name) = FileName::new(&relative) else {
                continue;
            };
            files.insert(
                file_name,
                SecretFile {
                    mode: meta.permissions().mode() & 0o777,
                    contents: SecretValue::new(fs::read(entry.path())?),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, u32, &str)]) -> FileSet {
        entries
            .iter()
            .map(|(name, mode, text)| {
                (
                    FileName::new(name).unwrap(),
                    SecretFile {
                        mode: *mode,
                        contents: SecretValue::from(*text),
                    },
                )
            })
            .collect()
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_generations_swaps_data_and_links_names() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path()).with_grace(Duration::ZERO);
        let first = set(&[("a", 0o640, "one"), ("sub/b", 0o600, "two")]);
        assert!(writer.write(&first).unwrap());

        let data = fs::read_link(dir.path().join(DATA)).unwrap();
        assert!(data.to_str().unwrap().starts_with(".."));
        assert_eq!(
            fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(dir.path().join("sub/b")).unwrap(), "two");
        let mode = fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(writer.current().unwrap(), Some(first.clone()));

        // Same content: nothing happens.
        assert!(!writer.write(&first).unwrap());
        assert_eq!(fs::read_link(dir.path().join(DATA)).unwrap(), data);

        // New content: a new generation, the old one gone, a dropped name unlinked.
        let second = set(&[("a", 0o644, "uno")]);
        assert!(writer.write(&second).unwrap());
        let new_data = fs::read_link(dir.path().join(DATA)).unwrap();
        assert_ne!(new_data, data);
        assert_eq!(generations(dir.path()), vec![new_data.to_str().unwrap()]);
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "uno");
        assert!(fs::symlink_metadata(dir.path().join("sub")).is_err());
    }

    #[test]
    fn a_mode_change_alone_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path()).with_grace(Duration::ZERO);
        assert!(writer.write(&set(&[("a", 0o644, "x")])).unwrap());
        assert!(writer.write(&set(&[("a", 0o400, "x")])).unwrap());
        let mode = fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
    }

    #[test]
    fn refuses_to_clobber_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "mine").unwrap();
        let writer = AtomicWriter::new(dir.path());
        let error = writer.write(&set(&[("a", 0o644, "x")])).unwrap_err();
        assert!(error.to_string().contains("not a symlink"), "{error}");
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "mine");
        assert!(fs::symlink_metadata(dir.path().join(DATA)).is_err());
    }
}
