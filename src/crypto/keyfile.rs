//! The key file: where the key ring lives on disk, readable by its owner
//! only.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use rand::RngExt as _;

use super::{CryptoError, KeyRing};

/// Written above the keys so that whoever finds the file knows what it is and
/// what losing it means. [`KeyRing::parse`] skips `#` lines.
const HEADER: &str = "\
# Switchboard key ring: one kid:hex-key per line. The first key seals new
# values, every key opens. Keep this file private (mode 0600) and backed up:
# without it the stored secrets cannot be decrypted.
";

fn key_file_error(path: &Path, message: impl Into<String>) -> CryptoError {
    CryptoError::KeyFile {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Loads a key ring from a key file.
///
/// When the file does not exist and `create` is true, a ring with one fresh
/// key is generated and written with mode 0600 (the parent directory is
/// created with mode 0700 if missing). The file is created with `create_new`
/// and the mode set at creation, so it is never world-readable, even briefly.
/// If another process creates the file concurrently, its file is loaded.
///
/// A file whose permissions give the group or others any access is refused:
/// the keys may already have leaked and the operator should know.
///
/// # Errors
/// [`CryptoError::KeyFile`] if the file is missing (and `create` is false),
/// cannot be read or created, has unsafe permissions, or does not parse.
pub fn load_or_create_key_file(path: &Path, create: bool) -> Result<KeyRing, CryptoError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => create_key_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(key_file_error(
            path,
            "does not exist (allow the server to create it, or point to the right file)",
        )),
        Err(e) => Err(key_file_error(path, format!("cannot open: {e}"))),
    }
}

/// Atomically replaces the key file with `ring`: writes a temporary file with
/// mode 0600 in the same directory, fsyncs it, renames it over `path` and
/// fsyncs the directory. A crash leaves either the old or the new file, never
/// a torn one. Creates the parent directory (mode 0700) if missing.
///
/// # Errors
/// [`CryptoError::KeyFile`] if any step fails; the temporary file is removed
/// on failure.
pub fn write_key_file(path: &Path, ring: &KeyRing) -> Result<(), CryptoError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| key_file_error(path, "the path has no file name"))?;
    let dir = parent_dir(path);
    ensure_dir(path, dir)?;

    let mut suffix = [0u8; 6];
    rand::rng().fill(&mut suffix[..]);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let mut file = create_private(&tmp)
        .map_err(|e| key_file_error(path, format!("cannot create temporary file: {e}")))?;
    let written = write_ring(&mut file, ring).and_then(|()| {
        drop(file);
        fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        // Best effort: the temporary file holds keys and must not linger, but
        // failing to remove it should not hide the original error.
        let _ = fs::remove_file(&tmp);
        return Err(key_file_error(path, format!("cannot write: {e}")));
    }
    sync_dir(dir);
    Ok(())
}

fn read_key_file(path: &Path, mut file: File) -> Result<KeyRing, CryptoError> {
    // Permissions are checked on the opened handle, not the path, so the file
    // that is checked is the file that is read.
    let meta = file
        .metadata()
        .map_err(|e| key_file_error(path, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(key_file_error(path, "is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_file_error(
            path,
            format!(
                "permissions {mode:04o} give group or others access; the key file must be \
                 private to its owner (run `chmod 600 {}`, and consider rotating the keys)",
                path.display()
            ),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| key_file_error(path, format!("cannot read: {e}")))?;
    KeyRing::parse(&text).map_err(|e| key_file_error(path, e.to_string()))
}

fn create_key_file(path: &Path) -> Result<KeyRing, CryptoError> {
    let dir = parent_dir(path);
    ensure_dir(path, dir)?;
    let mut file = match create_private(path) {
        Ok(file) => file,
        // Lost a race with another process creating the key file: its keys
        // are the ones to use, or the two processes would seal with different
        // keys.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return load_or_create_key_file(path, false);
        }
        Err(e) => return Err(key_file_error(path, format!("cannot create: {e}"))),
    };
    let ring = KeyRing::generate();
    if let Err(e) = write_ring(&mut file, &ring) {
        // A half-written key file would fail to parse on the next start;
        // removing it lets that start generate a fresh one.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(key_file_error(path, format!("cannot write: {e}")));
    }
    sync_dir(dir);
    Ok(ring)
}

/// Creates a new file that only its owner can read or write. `create_new`
/// refuses to follow or reuse an existing path; the mode applies at creation,
/// so no window exists in which the file has looser permissions (the umask
/// can only remove bits).
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn write_ring(file: &mut File, ring: &KeyRing) -> io::Result<()> {
    let spec = ring.to_spec();
    file.write_all(HEADER.as_bytes())?;
    file.write_all(spec.expose().as_bytes())?;
    file.sync_all()
}

/// The directory containing `path`; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn ensure_dir(path: &Path, dir: &Path) -> Result<(), CryptoError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| key_file_error(path, format!("cannot create directory: {e}")))
}

/// Makes a create or rename in `dir` durable. Best effort: some filesystems
/// refuse to fsync directories, and the file itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use crate::crypto::SealContext;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_with_0600_and_reloaded_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/keys");
        let ring = load_or_create_key_file(&path, true).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().unwrap()), 0o700);

        let again = load_or_create_key_file(&path, true).unwrap();
        assert_eq!(again.kids(), ring.kids());
        assert_eq!(again.to_spec(), ring.to_spec());
        let ctx = SealContext::new("t", "c", "1");
        assert_eq!(again.open(&ring.seal(b"v", ctx), ctx).unwrap(), b"v");

        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with('#'));
        assert!(text.contains(ring.to_spec().expose()));
    }

    #[test]
    fn missing_without_create_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        assert!(matches!(
            load_or_create_key_file(&path, false),
            Err(CryptoError::KeyFile { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn group_or_world_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let ring = KeyRing::generate();
        fs::write(&path, ring.to_spec().expose()).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            match load_or_create_key_file(&path, true) {
                Err(e @ CryptoError::KeyFile { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("chmod 600"), "{msg}");
                    assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
                    assert!(!msg.contains(ring.to_spec().expose().trim()), "{msg}");
                }
                other => panic!("mode {mode:o} gave {other:?}"),
            }
        }
        // The refused file is left alone, and once fixed it loads.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load_or_create_key_file(&path, true).unwrap();
        assert_eq!(loaded.to_spec(), ring.to_spec());
    }

    #[test]
    fn unparseable_file_is_reported_without_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        create_private(&path)
            .unwrap()
            .write_all(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
            .unwrap();
        match load_or_create_key_file(&path, true) {
            Err(e @ CryptoError::KeyFile { .. }) => {
                assert!(!e.to_string().contains("0123456789abcdef"), "{e}");
            }
            other => panic!("expected KeyFile error, got {other:?}"),
        }
    }

    #[test]
    fn write_key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let first = load_or_create_key_file(&path, true).unwrap();
        let rotated = first.with_new_primary();
        write_key_file(&path, &rotated).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let loaded = load_or_create_key_file(&path, false).unwrap();
        assert_eq!(loaded.kids(), rotated.kids());
        assert_eq!(loaded.to_spec(), rotated.to_spec());
        // Only the key file remains: no temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keys")]);
    }

    #[test]
    fn write_key_file_replaces_loose_permissions_and_creates_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        fs::write(&path, "junk").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let ring = KeyRing::generate();
        write_key_file(&path, &ring).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            load_or_create_key_file(&path, false).unwrap().to_spec(),
            ring.to_spec()
        );

        let nested = dir.path().join("a/b/keys");
        write_key_file(&nested, &ring).unwrap();
        assert_eq!(mode_of(&nested), 0o600);
    }
}
