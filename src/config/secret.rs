//! `SECRET_KEY`: given, or generated once and kept in the data directory (readable by
//! its owner only); never printed.

use std::fmt;
use std::path::Path;

use rand::RngCore;

use super::{invalid, ConfigError};

/// The key that signs and encrypts cookies. Never printed.
#[derive(Clone)]
pub struct SecretKey(pub(super) String);

impl SecretKey {
    pub fn new(value: String) -> Result<Self, ConfigError> {
        if value.len() < 32 {
            return Err(invalid("SECRET_KEY", "must be at least 32 characters"));
        }
        Ok(SecretKey(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads `data_dir/secret_key`, or generates and persists a new random key there, so
    /// sessions survive restarts without a hard-coded default.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, ConfigError> {
        Self::load_or_generate_in(data_dir, "secret_key")
    }

    /// `load_or_generate` for the file `name` in `data_dir`: a process that finds it
    /// made by another meanwhile (a server and a command starting together) reads it.
    pub fn load_or_generate_in(data_dir: &Path, name: &str) -> Result<Self, ConfigError> {
        let file = data_dir.join(name);
        let variable = match name {
            "secret_key" => "SECRET_KEY",
            _ => "CACHE_ADMIN_TOKEN",
        };
        if let Ok(existing) = std::fs::read_to_string(&file) {
            return SecretKey::new(existing.trim().to_string());
        }
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        let key = hex::encode(bytes);
        match std::fs::create_dir_all(data_dir).and_then(|_| write_private(&file, &key)) {
            Ok(()) => Ok(SecretKey(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read_to_string(&file).unwrap_or_default();
                SecretKey::new(existing.trim().to_string())
            }
            Err(e) => Err(invalid(
                variable,
                format!(
                    "unset, and cannot persist a generated one to {}: {e}",
                    file.display()
                ),
            )),
        }
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}
