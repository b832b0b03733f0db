//! Crash-safe, private file writes: temp file (mode 0600) → fsync → rename → fsync directory.
//!
//! A reader sees either the old file or the new one, never a torn mix, whatever moment the
//! process dies at. [`exposed`] tells whether a secret file others could read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Suffix of in-progress writes; leftovers are removed by [`remove_stale_temp_files`].
pub const TEMP_SUFFIX: &str = ".tmp";

/// Atomically replaces `path` with `contents`, readable by the owner only.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_via_temp(path, contents, |tmp, path| fs::rename(tmp, path))
}

/// Like [`write_private_atomic`], but fails with `AlreadyExists` instead of replacing a file
/// that is there (the new name is a hard link to the finished temporary file, which the file
/// system refuses when the name exists).
pub fn write_private_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_via_temp(path, contents, |tmp, path| {
        let linked = fs::hard_link(tmp, path);
        // A link leaves the temporary name behind.
        let _ = fs::remove_file(tmp);
        linked
    })
}

/// A fresh temporary name next to `path`: unique per write, so concurrent writes of one file
/// never share a temporary file.
fn temp_path(path: &Path) -> io::Result<std::path::PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(
        ".{}.{:016x}{TEMP_SUFFIX}",
        std::process::id(),
        rand::random::<u64>()
    ));
    Ok(dir.join(tmp_name))
}

/// Writes `contents` to a private temporary file next to `path`, fsyncs it, puts it in place
/// with `place`, and fsyncs the directory.
fn write_via_temp(
    path: &Path,
    contents: &[u8],
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let result = (|| {
        let mut file = open_private(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        place(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Deletes `path` and fsyncs its directory, so the deletion survives a crash; `false` if
/// there was no such file.
pub fn remove_durably(path: &Path) -> io::Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    File::open(dir)?.sync_all()?;
    Ok(true)
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    // A new file only: a name planted in advance (a link to elsewhere) is never followed.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates a directory (and parents) readable by the owner only.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates a directory that must not exist yet (its parent must), readable by the owner only
/// from the start.
pub fn create_new_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Deletes temp files left in `dir` by a write that a crash interrupted; returns how many.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether the secret file at `path` is exposed beyond the node: `Some` with a message saying
/// how to fix it, `None` when it is private (or cannot be inspected: reading it then reports
/// the real error).
///
/// Private means mode 0600 or stricter. One exception, as PostgreSQL makes for its key files:
/// a file owned by root may also be readable (not writable) by its group, mode 0640 or
/// stricter. That is how a secret is handed to a service that does not run as root (a
/// Kubernetes secret volume with `fsGroup`, the compose cluster's identities); only root could
/// have made it so.
pub fn exposed(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.mode() & 0o777;
        let shared_by_root = meta.uid() == 0 && mode & 0o037 == 0;
        if mode & 0o077 != 0 && !shared_by_root {
            let who = if mode & 0o007 != 0 {
                "others"
            } else {
                "its group"
            };
            return Some(format!(
                "{} is readable by {who} (mode {mode:o}, owner uid {}): chmod 600 it (a file \
                 shared with the node through its group must be owned by root, mode 0640 at most)",
                path.display(),
                meta.uid()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_private_atomic(&path, b"one").unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        fs::write(dir.path().join("b.json.12.tmp"), b"torn").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_must_be_private_or_shared_by_root_with_a_group_only() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"x").unwrap();
        let set = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        for mode in [0o600, 0o400] {
            set(mode).unwrap();
            assert_eq!(exposed(&path), None, "{mode:o}");
        }
        for mode in [0o644, 0o604, 0o606, 0o660, 0o620, 0o650] {
            set(mode).unwrap();
            let problem = exposed(&path).unwrap_or_else(|| panic!("{mode:o} accepted"));
            assert!(problem.contains("chmod 600"), "{problem}");
        }
        // Group-readable: accepted only from a file owned by root.
        set(0o640).unwrap();
        let root = std::fs::metadata(&path).unwrap().uid() == 0;
        assert_eq!(exposed(&path).is_none(), root);
        if root {
            std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
            let problem = exposed(&path).expect("0640 owned by another user");
            assert!(problem.contains("readable by its group"), "{problem}");
        }
        assert_eq!(exposed(&dir.path().join("absent")), None);
    }
}
