//! Which token and key hold the master key, parsed from the environment into an [`HsmConfig`] that can only
//! exist when every part is present and well-formed. Whether the module, the token and the key really exist is
//! the token's answer, given by [`crate::Pkcs11Holder::connect`].

use std::ffi::OsString;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Path to the PKCS#11 module (the vendor's `.so`), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
pub const MODULE_ENV: &str = "LINKVAULT_MASTER_KEY_PKCS11_MODULE";
/// Label of the token that holds the key.
pub const TOKEN_ENV: &str = "LINKVAULT_MASTER_KEY_PKCS11_TOKEN";
/// Label (`CKA_LABEL`) of the AES-256 secret key in that token.
pub const KEY_ENV: &str = "LINKVAULT_MASTER_KEY_PKCS11_KEY";
/// The token's user PIN.
pub const PIN_ENV: &str = "LINKVAULT_MASTER_KEY_PKCS11_PIN";
/// A file holding the user PIN (one line; a trailing newline is ignored). Exclusive with [`PIN_ENV`].
pub const PIN_FILE_ENV: &str = "LINKVAULT_MASTER_KEY_PKCS11_PIN_FILE";

/// Every variable of this holder, in the order the errors name them.
pub const ALL_ENV: [&str; 5] = [MODULE_ENV, TOKEN_ENV, KEY_ENV, PIN_ENV, PIN_FILE_ENV];

/// `CK_TOKEN_INFO.label` is 32 bytes, blank padded.
pub const MAX_TOKEN_LABEL_BYTES: usize = 32;
/// `CKA_LABEL` has no bound in PKCS#11; this one keeps a mistyped value from becoming a search template.
pub const MAX_KEY_LABEL_BYTES: usize = 128;
/// Longer than any token's PIN policy (SoftHSM2 allows 255 bytes).
pub const MAX_PIN_BYTES: usize = 255;
/// A PIN file is read only up to this size; anything larger is not a PIN file.
const MAX_PIN_FILE_BYTES: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{missing} is not set, but {set} is: the PKCS#11 key holder needs {MODULE_ENV}, {TOKEN_ENV}, {KEY_ENV} \
         and one of {PIN_ENV} or {PIN_FILE_ENV}"
    )]
    Missing { missing: &'static str, set: &'static str },
    #[error("{var} is empty; set it or unset every LINKVAULT_MASTER_KEY_PKCS11_* variable")]
    Empty { var: &'static str },
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
    #[error("both {PIN_ENV} and {PIN_FILE_ENV} are set; set only one")]
    BothPins,
    #[error("{var} is {len} bytes long; at most {max} bytes are allowed")]
    TooLong { var: &'static str, len: usize, max: usize },
    #[error("{var} contains a control character (a stray newline or tab?); labels are printable text")]
    ControlCharacter { var: &'static str },
    #[error("{var} has leading or trailing spaces; PKCS#11 pads token labels with spaces, so they cannot match")]
    Padded { var: &'static str },
    #[error("{var} must be an absolute path to the PKCS#11 module (a .so file), not {}", path.display())]
    RelativeModulePath { var: &'static str, path: PathBuf },
    #[error("cannot read the PIN file {} ({PIN_FILE_ENV}): {source}", path.display())]
    PinFileRead { path: PathBuf, source: std::io::Error },
    #[error("the PIN file {} ({PIN_FILE_ENV}) is larger than {MAX_PIN_FILE_BYTES} bytes; it must hold only the PIN", path.display())]
    PinFileTooLarge { path: PathBuf },
    #[error("the PIN file {} ({PIN_FILE_ENV}) is not valid UTF-8", path.display())]
    PinFileNotUnicode { path: PathBuf },
    #[error("the PIN file {} ({PIN_FILE_ENV}) is empty", path.display())]
    PinFileEmpty { path: PathBuf },
}

/// Where the master key lives: a module, a token in it, a key in that token, and the PIN that opens it.
/// The PIN is never printed (`Debug` is written by hand) and is zeroized when the config is dropped.
pub struct HsmConfig {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin: SecretString,
}

impl HsmConfig {
    /// A config from its parts, checked as [`HsmConfig::from_env`] checks the variables.
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: &str,
        key_label: &str,
        pin: SecretString,
    ) -> Result<Self, ConfigError> {
        let module = module.into();
        if !module.is_absolute() {
            return Err(ConfigError::RelativeModulePath { var: MODULE_ENV, path: module });
        }
        let token_label = label(TOKEN_ENV, token_label, MAX_TOKEN_LABEL_BYTES)?;
        let key_label = label(KEY_ENV, key_label, MAX_KEY_LABEL_BYTES)?;
        check_pin(PIN_ENV, pin.expose_secret())?;
        Ok(Self { module, token_label, key_label, pin })
    }

    /// Reads the `LINKVAULT_MASTER_KEY_PKCS11_*` variables of this process. `Ok(None)` when none is set (the
    /// master key comes from elsewhere); an error when some are set but the set is incomplete or malformed.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`HsmConfig::from_env`] over any source of variables (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Option<Self>, ConfigError> {
        let Some(first_set) = ALL_ENV.into_iter().find(|name| lookup(name).is_some()) else {
            return Ok(None);
        };
        let text = |var: &'static str| -> Result<String, ConfigError> {
            let value = lookup(var).ok_or(ConfigError::Missing { missing: var, set: first_set })?;
            let value = value.into_string().map_err(|_| ConfigError::NotUnicode { var })?;
            if value.is_empty() {
                return Err(ConfigError::Empty { var });
            }
            Ok(value)
        };
        let module = PathBuf::from(text(MODULE_ENV)?);
        let token = text(TOKEN_ENV)?;
        let key = text(KEY_ENV)?;
        let pin = match (lookup(PIN_ENV), lookup(PIN_FILE_ENV)) {
            (Some(_), Some(_)) => return Err(ConfigError::BothPins),
            (None, None) => return Err(ConfigError::Missing { missing: PIN_ENV, set: first_set }),
            (Some(value), None) => {
                let value = Zeroizing::new(value.into_string().map_err(|_| ConfigError::NotUnicode { var: PIN_ENV })?);
                check_pin(PIN_ENV, &value)?;
                SecretString::from(value.as_str())
            }
            (None, Some(path)) => read_pin_file(Path::new(&path))?,
        };
        Self::new(module, &token, &key, pin).map(Some)
    }

    pub fn module(&self) -> &Path {
        &self.module
    }

    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    pub(crate) fn pin(&self) -> &SecretString {
        &self.pin
    }

    /// The same token and PIN, another key label: for a second key in the same token (rotation, tests).
    pub fn with_key_label(&self, key_label: &str) -> Result<Self, ConfigError> {
        Self::new(self.module.clone(), &self.token_label, key_label, SecretString::from(self.pin.expose_secret()))
    }

    /// The same module, token and key, another PIN.
    pub fn with_pin(&self, pin: SecretString) -> Result<Self, ConfigError> {
        Self::new(self.module.clone(), &self.token_label, &self.key_label, pin)
    }
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

fn label(var: &'static str, value: &str, max: usize) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::Empty { var });
    }
    if value.len() > max {
        return Err(ConfigError::TooLong { var, len: value.len(), max });
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::ControlCharacter { var });
    }
    if value.trim() != value {
        return Err(ConfigError::Padded { var });
    }
    Ok(value.to_owned())
}

/// Lengths only: a PIN's bytes are never echoed, not even in part.
fn check_pin(var: &'static str, pin: &str) -> Result<(), ConfigError> {
    if pin.is_empty() {
        return Err(ConfigError::Empty { var });
    }
    if pin.len() > MAX_PIN_BYTES {
        return Err(ConfigError::TooLong { var, len: pin.len(), max: MAX_PIN_BYTES });
    }
    Ok(())
}

fn read_pin_file(path: &Path) -> Result<SecretString, ConfigError> {
    let read_error = |source| ConfigError::PinFileRead { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PIN_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_PIN_FILE_BYTES {
        return Err(ConfigError::PinFileTooLarge { path: path.to_owned() });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| ConfigError::PinFileNotUnicode { path: path.to_owned() })?;
    // One line, as `echo PIN > file` writes it; other whitespace may be part of the PIN.
    let pin = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
    if pin.is_empty() {
        return Err(ConfigError::PinFileEmpty { path: path.to_owned() });
    }
    check_pin(PIN_FILE_ENV, pin)?;
    Ok(SecretString::from(pin))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| ((*k).to_owned(), OsString::from(v))).collect();
        move |name| map.get(name).cloned()
    }

    const FULL: [(&str, &str); 4] = [
        (MODULE_ENV, "/usr/lib/softhsm/libsofthsm2.so"),
        (TOKEN_ENV, "linkvault"),
        (KEY_ENV, "master"),
        (PIN_ENV, "1234-secret-pin"),
    ];

    #[test]
    fn nothing_set_means_no_hsm() -> Result<(), ConfigError> {
        assert!(HsmConfig::from_lookup(lookup(&[]))?.is_none());
        Ok(())
    }

    #[test]
    fn a_full_set_parses_and_debug_hides_the_pin() -> Result<(), Box<dyn std::error::Error>> {
        let config = HsmConfig::from_lookup(lookup(&FULL))?.ok_or("no config")?;
        assert_eq!(config.module(), Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(config.token_label(), "linkvault");
        assert_eq!(config.key_label(), "master");
        assert_eq!(config.pin().expose_secret(), "1234-secret-pin");
        let shown = format!("{config:?}");
        assert!(!shown.contains("1234-secret-pin"), "{shown}");
        assert!(shown.contains("<redacted>"));
        Ok(())
    }

    #[test]
    fn each_missing_part_is_named() {
        for skip in [MODULE_ENV, TOKEN_ENV, KEY_ENV, PIN_ENV] {
            let vars: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != skip).collect();
            match HsmConfig::from_lookup(lookup(&vars)) {
                Err(ConfigError::Missing { missing, .. }) => assert_eq!(missing, skip),
                other => panic!("without {skip}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_values_are_refused_with_the_variable_named() {
        let with = |var: &'static str, value: &'static str| {
            let mut vars: Vec<(&str, &str)> = FULL.iter().copied().filter(|(k, _)| *k != var).collect();
            vars.push((var, value));
            HsmConfig::from_lookup(lookup(&vars))
        };
        assert!(matches!(with(MODULE_ENV, ""), Err(ConfigError::Empty { var: MODULE_ENV })));
        assert!(matches!(with(MODULE_ENV, "libsofthsm2.so"), Err(ConfigError::RelativeModulePath { .. })));
        assert!(matches!(with(TOKEN_ENV, "a-label-longer-than-thirty-two-bytes"), Err(ConfigError::TooLong { .. })));
        assert!(matches!(with(TOKEN_ENV, "tok "), Err(ConfigError::Padded { var: TOKEN_ENV })));
        assert!(matches!(with(KEY_ENV, "mas\nter"), Err(ConfigError::ControlCharacter { var: KEY_ENV })));
        assert!(matches!(with(PIN_ENV, ""), Err(ConfigError::Empty { var: PIN_ENV })));
        let long_pin: &'static str = Box::leak("9".repeat(MAX_PIN_BYTES + 1).into_boxed_str());
        match with(PIN_ENV, long_pin) {
            Err(e @ ConfigError::TooLong { .. }) => assert!(!e.to_string().contains(long_pin)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(with(PIN_FILE_ENV, "/nonexistent"), Err(ConfigError::BothPins)));
    }

    #[test]
    fn the_pin_file_is_read_without_its_newline() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pin");
        std::fs::write(&path, "from-a-file\r\n")?;
        let path_text = path.to_str().ok_or("temp path is not UTF-8")?;
        let vars = [FULL[0], FULL[1], FULL[2], (PIN_FILE_ENV, path_text)];
        let config = HsmConfig::from_lookup(lookup(&vars))?.ok_or("no config")?;
        assert_eq!(config.pin().expose_secret(), "from-a-file");

        std::fs::write(&path, "\n")?;
        assert!(matches!(HsmConfig::from_lookup(lookup(&vars)), Err(ConfigError::PinFileEmpty { .. })));
        std::fs::write(&path, vec![b'7'; 2000])?;
        assert!(matches!(HsmConfig::from_lookup(lookup(&vars)), Err(ConfigError::PinFileTooLarge { .. })));
        let missing = dir.path().join("missing");
        let missing_text = missing.to_str().ok_or("temp path is not UTF-8")?;
        let vars = [FULL[0], FULL[1], FULL[2], (PIN_FILE_ENV, missing_text)];
        match HsmConfig::from_lookup(lookup(&vars)) {
            Err(e @ ConfigError::PinFileRead { .. }) => assert!(e.to_string().contains("missing")),
            other => panic!("{other:?}"),
        }
        Ok(())
    }
}
