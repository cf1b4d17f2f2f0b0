//! Creating VIBER_HOME: what `viber init` does, and what the gateway and clients do
//! quietly when something is missing. It only ever creates; it never overwrites.

use serde::Serialize;

use super::{Config, Home, StoreError, config::DEFAULT_CONFIG_YAML, fsutil};
use crate::identity::{self, DeviceKey};

#[derive(Debug, Default, Serialize)]
pub struct InitReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

/// Ensures the home directory, config, device key, gateway token and report-signing key
/// exist.
pub fn ensure(home: &Home) -> Result<InitReport, StoreError> {
    let mut report = InitReport::default();
    let mut note = |created: bool, path: std::path::PathBuf| {
        let p = path.display().to_string();
        if created {
            report.created.push(p)
        } else {
            report.existing.push(p)
        }
    };
    for dir in [
        home.root().to_path_buf(),
        home.identity_dir(),
        home.gateway_dir(),
    ] {
        let existed = dir.exists();
        fsutil::ensure_private_dir(&dir)?;
        if dir == home.root() {
            note(!existed, dir);
        }
    }

    let config_path = home.config();
    if config_path.exists() {
        // Validate, so `viber init` reports a broken config instead of blessing it.
        Config::load(&config_path)?;
        note(false, config_path);
    } else {
        note(
            fsutil::create_secret(&config_path, DEFAULT_CONFIG_YAML.as_bytes())?,
            config_path,
        );
    }

    let key_path = home.device_key();
    let (_, created) = DeviceKey::load_or_create(&key_path)?;
    note(created, key_path);

    let token_path = home.gateway_token();
    let created = fsutil::create_secret(&token_path, identity::random_hex(32).as_bytes())?;
    note(created, token_path);

    // The key that signs run reports (only the gateway reads it), made now so
    // `viber status` and `viber report --allowed-signers` can name it before any run.
    let signing_path = home.signing_key();
    let (_, created) = crate::evidence::sign::Signer::load_or_create(&signing_path)?;
    note(created, signing_path);
    Ok(report)
}
