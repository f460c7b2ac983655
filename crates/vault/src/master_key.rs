//! Where the master key comes from: `LINKVAULT_MASTER_KEY`, `LINKVAULT_MASTER_KEY_FILE`, or a key generated
//! into the data dir (mode 0600) on first start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use linkvault_crypto::MasterKey;

pub const MASTER_KEY_ENV: &str = "LINKVAULT_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "LINKVAULT_MASTER_KEY_FILE";
pub const GENERATED_KEY_FILE: &str = "master.key";
/// The new key for `keys rotate-master`, when not given as `--new-key-file`.
pub const NEW_MASTER_KEY_ENV: &str = "LINKVAULT_NEW_MASTER_KEY";

/// Where the key was found, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Environment,
    File(PathBuf),
    /// Generated just now into this file: the operator must back it up.
    Generated(PathBuf),
    /// Generated on an earlier start into this file.
    DataDir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyLoadError {
    #[error("{MASTER_KEY_ENV}: {0}")]
    Env(linkvault_crypto::MasterKeyError),
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: linkvault_crypto::MasterKeyError },
    #[error("cannot read master key file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write a new master key to {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate a master key: {0}")]
    Generate(linkvault_crypto::MasterKeyError),
    #[error(
        "no new master key given: pass --new-key-file PATH (a file holding the base64 of 32 random bytes, e.g. \
         from `head -c 32 /dev/urandom | base64`) or set {NEW_MASTER_KEY_ENV}"
    )]
    NoNewKey,
    #[error("{NEW_MASTER_KEY_ENV}: {0}")]
    NewEnv(linkvault_crypto::MasterKeyError),
}

/// The new master key of `keys rotate-master`: the file if given, else `LINKVAULT_NEW_MASTER_KEY`.
pub fn load_new(file: Option<&Path>, env_value: Option<&str>) -> Result<MasterKey, MasterKeyLoadError> {
    if let Some(path) = file {
        return read_key_file(path);
    }
    match env_value.filter(|v| !v.trim().is_empty()) {
        Some(value) => MasterKey::from_base64(value).map_err(MasterKeyLoadError::NewEnv),
        None => Err(MasterKeyLoadError::NoNewKey),
    }
}

/// Loads the master key: explicit value, then explicit file, then the data dir's generated key
/// (creating it on first start).
pub fn load(
    env_value: Option<&str>,
    env_file: Option<&Path>,
    data_dir: &Path,
) -> Result<(MasterKey, MasterKeySource), MasterKeyLoadError> {
    if let Some(found) = find(env_value, env_file, data_dir)? {
        return Ok(found);
    }
    let path = data_dir.join(GENERATED_KEY_FILE);
    let key = MasterKey::generate().map_err(MasterKeyLoadError::Generate)?;
    write_new_key_file(&path, &key)?;
    Ok((key, MasterKeySource::Generated(path)))
}

/// The configured master key, without generating one: `None` where [`load`] would generate it (neither
/// variable set and no key in the data dir yet). Reads only; `linkvault config check` uses it.
pub fn find(
    env_value: Option<&str>,
    env_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Option<(MasterKey, MasterKeySource)>, MasterKeyLoadError> {
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        return MasterKey::from_base64(value)
            .map(|k| Some((k, MasterKeySource::Environment)))
            .map_err(MasterKeyLoadError::Env);
    }
    if let Some(path) = env_file {
        return read_key_file(path).map(|k| Some((k, MasterKeySource::File(path.to_owned()))));
    }
    let path = data_dir.join(GENERATED_KEY_FILE);
    if path.exists() {
        return read_key_file(&path).map(|k| Some((k, MasterKeySource::DataDir(path))));
    }
    Ok(None)
}

fn read_key_file(path: &Path) -> Result<MasterKey, MasterKeyLoadError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| MasterKeyLoadError::Read { path: path.to_owned(), source })?,
    );
    MasterKey::from_base64(&text).map_err(|source| MasterKeyLoadError::File { path: path.to_owned(), source })
}

fn write_new_key_file(path: &Path, key: &MasterKey) -> Result<(), MasterKeyLoadError> {
    let err = |source| MasterKeyLoadError::Write { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new: never overwrite a key that appeared meanwhile (another process starting at the same time).
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(key.to_base64().as_bytes()).map_err(err)?;
    file.write_all(b"\n").map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (k1, s1) = load(None, None, dir.path())?;
        assert!(matches!(s1, MasterKeySource::Generated(_)));
        let (k2, s2) = load(None, None, dir.path())?;
        assert!(matches!(s2, MasterKeySource::DataDir(_)));
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn explicit_key_wins_and_bad_key_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = MasterKey::generate()?;
        let (k, s) = load(Some(key.to_base64().as_str()), None, dir.path())?;
        assert_eq!(s, MasterKeySource::Environment);
        assert_eq!(k.fingerprint(), key.fingerprint());
        let err = load(Some("short"), None, dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with(MASTER_KEY_ENV), "{err}");
        assert!(!dir.path().join(GENERATED_KEY_FILE).exists());
        Ok(())
    }
}
