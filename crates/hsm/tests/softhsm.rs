//! The PKCS#11 key holder against a real SoftHSM2 (Debian's `softhsm2`): each test gets its own token
//! directory, configuration and token, and runs in its own process — SoftHSM2 reads `SOFTHSM2_CONF` once per
//! `C_Initialize` and the variable is process-wide, so the parent test re-runs this binary for just that test
//! with the variable set (no `set_var`, no shared state between tests). Skipped, with the reason printed, only
//! where the module is not installed; CI installs it (`.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use linkvault_crypto::{CryptoError, MasterKeyHolder};
use linkvault_hsm::{HsmConfig, HsmError, Pkcs11Holder};
use secrecy::SecretString;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "linkvault-test";
const SO_PIN: &str = "so-pin-8642";
const USER_PIN: &str = "user-pin-1357";
/// Set in the child process: the token directory prepared by the parent.
const CHILD_ENV: &str = "LINKVAULT_HSM_TEST_DIR";
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `body` in a fresh process with a fresh SoftHSM2 token; see the module comment.
fn in_own_token(test_name: &str, body: fn(&HsmConfig) -> TestResult) -> TestResult {
    if std::env::var_os(CHILD_ENV).is_some() {
        return body(&config(MODULE, TOKEN, "master")?);
    }
    if !Path::new(MODULE).exists() {
        if std::env::var_os("CI").is_some() {
            return Err(format!("{MODULE} is missing on CI, where .ci/run installs softhsm2").into());
        }
        eprintln!("skipped {test_name}: {MODULE} is missing (apt-get install softhsm2)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )?;
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", TOKEN, "--so-pin", SO_PIN, "--pin", USER_PIN])
        .output()?;
    if !init.status.success() {
        return Err(format!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&init.stderr)).into());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("SOFTHSM2_CONF", &conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > CHILD_TIMEOUT {
            child.kill()?;
            return Err(format!("{test_name} did not finish within {CHILD_TIMEOUT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The child's harness must have run exactly this one test, or the parent proves nothing.
    if !status.success() || !stdout.contains("1 passed") {
        return Err(format!(
            "{test_name} failed in its own process ({status}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

macro_rules! softhsm_test {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() -> TestResult {
            in_own_token(stringify!($name), $body)
        }
    };
}

fn config(module: &str, token: &str, key: &str) -> Result<HsmConfig, linkvault_hsm::ConfigError> {
    HsmConfig::new(module, token, key, SecretString::from(USER_PIN))
}

/// A session of the test's own, beside the holder's, to look at and plant objects in the token the way
/// another program would.
fn side_session() -> Result<Session, CkError> {
    let pkcs11 = Pkcs11::new(MODULE)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e),
    }
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| pkcs11.get_token_info(*slot).is_ok_and(|info| info.label() == TOKEN))
        .ok_or(CkError::InvalidValue)?;
    let session = pkcs11.open_rw_session(slot)?;
    match session.login(UserType::User, Some(&SecretString::from(USER_PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(e),
    }
}

softhsm_test!(seal_and_open_round_trip_bound_to_context, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    for plaintext in [&b"keyring bytes"[..], &[0u8; 1], &[7u8; 4096]] {
        let sealed = holder.seal(b"keyring/v1", plaintext)?;
        assert_eq!(sealed.len(), 1 + 12 + plaintext.len() + 16, "format | IV | ciphertext | tag");
        assert_eq!(sealed[0], 1);
        assert_eq!(holder.open(b"keyring/v1", &sealed)?.as_slice(), plaintext);
        assert_eq!(holder.open(b"keyring/v2", &sealed), Err(CryptoError::OpenFailed));
        assert_eq!(holder.open(b"", &sealed), Err(CryptoError::OpenFailed));
    }
    let empty_context = holder.seal(b"", b"under no context")?;
    assert_eq!(holder.open(b"", &empty_context)?.as_slice(), b"under no context");
    // A fresh IV each time: the same input never seals to the same bytes.
    let (a, b) = (holder.seal(b"c", b"same")?, holder.seal(b"c", b"same")?);
    assert_ne!(a[1..13], b[1..13]);
    assert_ne!(a, b);
    Ok(())
});

softhsm_test!(a_tampered_or_truncated_blob_never_opens, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    let sealed = holder.seal(b"ctx", b"the keyring")?;
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        let expected = if i == 0 { CryptoError::Malformed } else { CryptoError::OpenFailed };
        assert_eq!(holder.open(b"ctx", &bad), Err(expected), "byte {i} flipped");
    }
    for len in [0, 1, 13, 28] {
        assert_eq!(holder.open(b"ctx", &sealed[..len]), Err(CryptoError::Malformed), "truncated to {len}");
    }
    assert_eq!(holder.open(b"ctx", &sealed[..sealed.len() - 1]), Err(CryptoError::OpenFailed));
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(holder.open(b"ctx", &longer), Err(CryptoError::OpenFailed));
    assert_eq!(holder.open(b"ctx", &sealed)?.as_slice(), b"the keyring", "the original still opens");
    Ok(())
});

softhsm_test!(another_keys_blob_fails_and_fingerprints_differ, |config| {
    let first = Pkcs11Holder::generate_key(config)?;
    let second = Pkcs11Holder::generate_key(&config.with_key_label("master-2")?)?;
    let sealed = first.seal(b"ctx", b"for the first key")?;
    assert_eq!(second.open(b"ctx", &sealed), Err(CryptoError::OpenFailed));
    assert_eq!(first.open(b"ctx", &sealed)?.as_slice(), b"for the first key");
    let (f1, f2) = (first.fingerprint()?, second.fingerprint()?);
    assert_ne!(f1, f2);
    for f in [&f1, &f2] {
        assert_eq!(f.len(), 32);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{f}");
    }
    Ok(())
});

softhsm_test!(the_key_persists_and_its_fingerprint_is_stable_across_reconnects, |config| {
    let (fingerprint, sealed) = {
        let holder = Pkcs11Holder::generate_key(config)?;
        (holder.fingerprint()?, holder.seal(b"ctx", b"survives a restart")?)
    };
    // The holder is gone, so the module was finalized: the next connect initializes SoftHSM2 again and reads
    // the token from disk.
    for _ in 0..2 {
        let holder = Pkcs11Holder::connect(config)?;
        assert_eq!(holder.fingerprint()?, fingerprint);
        assert_eq!(holder.fingerprint()?, fingerprint);
        assert_eq!(holder.open(b"ctx", &sealed)?.as_slice(), b"survives a restart");
    }
    Ok(())
});

softhsm_test!(the_key_value_never_leaves_the_token, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    let session = side_session()?;
    let found = session.find_objects(&[Attribute::Label(b"master".to_vec())])?;
    let [key] = found.as_slice() else { return Err(format!("expected one key, found {}", found.len()).into()) };
    assert!(matches!(
        session.get_attribute_info(*key, &[AttributeType::Value])?.as_slice(),
        [AttributeInfo::Sensitive]
    ));
    assert!(session.get_attributes(*key, &[AttributeType::Value])?.is_empty(), "CKA_VALUE must be refused");
    let flags = session.get_attributes(
        *key,
        &[
            AttributeType::Sensitive,
            AttributeType::AlwaysSensitive,
            AttributeType::Extractable,
            AttributeType::NeverExtractable,
            AttributeType::Token,
            AttributeType::ValueLen,
        ],
    )?;
    for attribute in &flags {
        match attribute {
            Attribute::Sensitive(v)
            | Attribute::AlwaysSensitive(v)
            | Attribute::NeverExtractable(v)
            | Attribute::Token(v) => {
                assert!(*v, "{attribute:?}")
            }
            Attribute::Extractable(v) => assert!(!*v, "{attribute:?}"),
            Attribute::ValueLen(len) => assert_eq!(u64::from(*len), 32),
            other => return Err(format!("unexpected attribute {other:?}").into()),
        }
    }
    assert_eq!(flags.len(), 6);
    // Nor can it be wrapped out under another key.
    let wrapping = session.generate_key(
        &Mechanism::AesKeyGen,
        &[Attribute::ValueLen(32.into()), Attribute::Wrap(true), Attribute::Token(false)],
    )?;
    assert!(session.wrap_key(&Mechanism::AesKeyWrap, wrapping, *key).is_err());
    drop(holder);
    Ok(())
});

softhsm_test!(generate_refuses_an_existing_label, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    let fingerprint = holder.fingerprint()?;
    match Pkcs11Holder::generate_key(config) {
        Err(HsmError::KeyExists { label, .. }) => assert_eq!(label, "master"),
        other => return Err(format!("expected KeyExists, got {other:?}").into()),
    }
    assert_eq!(holder.fingerprint()?, fingerprint, "the existing key is untouched");
    Ok(())
});

softhsm_test!(wrong_pin_missing_token_and_missing_key_are_explained, |config| {
    match Pkcs11Holder::connect(&config.with_pin(SecretString::from("not-the-pin"))?) {
        Err(e @ HsmError::WrongPin { .. }) => {
            let text = e.to_string();
            assert!(text.contains("CKR_PIN_INCORRECT") && !text.contains("not-the-pin"), "{text}");
        }
        other => return Err(format!("expected WrongPin, got {other:?}").into()),
    }
    match Pkcs11Holder::connect(&config.with_key_label("absent")?) {
        Err(e @ HsmError::NoSuchKey { .. }) => assert!(e.to_string().contains("\"absent\""), "{e}"),
        other => return Err(format!("expected NoSuchKey, got {other:?}").into()),
    }
    match Pkcs11Holder::connect(&self::config(MODULE, "no-such-token", "master")?) {
        Err(e @ HsmError::NoSuchToken { .. }) => {
            let text = e.to_string();
            assert!(text.contains("\"no-such-token\"") && text.contains(&format!("\"{TOKEN}\"")), "{text}");
        }
        other => return Err(format!("expected NoSuchToken, got {other:?}").into()),
    }
    Ok(())
});

softhsm_test!(keys_that_are_not_held_safely_are_refused, |config| {
    let session = side_session()?;
    let plant = |label: &str, len: u64, extractable: bool, sensitive: bool, sign: bool| {
        session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(len.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(extractable),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sign(sign),
            ],
        )
    };
    plant("aes-128", 16, false, true, true)?;
    plant("exportable", 32, true, true, true)?;
    plant("readable", 32, false, false, true)?;
    plant("no-sign", 32, false, true, false)?;
    plant("twice", 32, false, true, true)?;
    plant("twice", 32, false, true, true)?;
    let refused = |label: &str| match Pkcs11Holder::connect(&config.with_key_label(label)?) {
        Ok(holder) => Err(format!("{label}: accepted {holder:?}").into()),
        Err(e) => Ok::<HsmError, Box<dyn std::error::Error>>(e),
    };
    assert!(matches!(refused("aes-128")?, HsmError::NotAes256 { .. }));
    let exportable = refused("exportable")?;
    assert!(matches!(exportable, HsmError::Extractable { .. }), "{exportable}");
    assert!(exportable.to_string().contains("rotate the master key"), "{exportable}");
    assert!(matches!(refused("readable")?, HsmError::NotSensitive { .. }));
    assert!(matches!(refused("no-sign")?, HsmError::Usage { .. }));
    assert!(matches!(refused("twice")?, HsmError::AmbiguousKey { count: 2, .. }));
    Ok(())
});

softhsm_test!(a_lost_login_is_restored_once, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    let sealed = holder.seal(b"ctx", b"before")?;
    // Logging out is per application: every session of this process, the holder's included, loses the login.
    let session = side_session()?;
    session.logout()?;
    let private = session.find_objects(&[Attribute::Label(b"master".to_vec())])?;
    assert!(private.is_empty(), "after the logout the private key is hidden from every session");
    assert_eq!(holder.open(b"ctx", &sealed)?.as_slice(), b"before");
    drop(session);
    let again = holder.seal(b"ctx", b"after")?;
    assert_eq!(holder.open(b"ctx", &again)?.as_slice(), b"after");
    Ok(())
});

softhsm_test!(debug_shows_labels_but_never_the_pin, |config| {
    let holder = Pkcs11Holder::generate_key(config)?;
    let shown = format!("{holder:?} {config:?}");
    assert!(shown.contains("master") && shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains(USER_PIN), "{shown}");
    Ok(())
});

softhsm_test!(a_key_made_with_pkcs11_tool_as_documented_is_accepted, |config| {
    // The command of docs/architecture.md ("Creating the token and the key"), with this test's token.
    let made = Command::new("pkcs11-tool")
        .args(["--module", MODULE, "--token-label", TOKEN, "--login", "--pin", USER_PIN])
        .args(["--keygen", "--key-type", "AES:32", "--label", "master", "--sensitive", "--private"])
        .args(["--usage-decrypt", "--usage-sign"])
        .output();
    let made = match made {
        Ok(made) => made,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("skipped: pkcs11-tool is not installed (apt-get install opensc)");
            return Ok(());
        }
        Err(e) => return Err(format!("pkcs11-tool: {e}").into()),
    };
    if !made.status.success() {
        return Err(format!("pkcs11-tool failed: {}", String::from_utf8_lossy(&made.stderr)).into());
    }
    let holder = Pkcs11Holder::connect(config)?;
    let sealed = holder.seal(b"ctx", b"made by pkcs11-tool")?;
    assert_eq!(holder.open(b"ctx", &sealed)?.as_slice(), b"made by pkcs11-tool");
    assert_eq!(holder.fingerprint()?.len(), 32);
    Ok(())
});

#[test]
fn a_missing_or_foreign_module_is_explained() -> TestResult {
    match Pkcs11Holder::connect(&config("/nonexistent/libpkcs11.so", TOKEN, "master")?) {
        Err(e @ HsmError::ModuleMissing { .. }) => assert!(e.to_string().contains("/nonexistent/libpkcs11.so")),
        other => return Err(format!("expected ModuleMissing, got {other:?}").into()),
    }
    let dir = tempfile::tempdir()?;
    let fake: PathBuf = dir.path().join("not-a-module.so");
    std::fs::write(&fake, b"this is not a shared library")?;
    match Pkcs11Holder::connect(&config(fake.to_str().ok_or("temp path is not UTF-8")?, TOKEN, "master")?) {
        Err(HsmError::ModuleLoad { path, .. }) => assert!(path.ends_with("not-a-module.so")),
        other => return Err(format!("expected ModuleLoad, got {other:?}").into()),
    }
    Ok(())
}
