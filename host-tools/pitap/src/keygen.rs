//! `pitap keygen`: a fresh key and the two configuration snippets that use
//! it, one for the tap and one for the collector.

use std::io::Read;
use std::path::Path;

use pitap_wire::envelope::Key;

pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes)
}

pub struct Snippets {
    pub tap: String,
    pub collector: String,
}

pub fn snippets(tap_id: &str, collector: &str, key: &Key) -> Snippets {
    let hex = key.to_hex();
    Snippets {
        tap: format!(
            "# pitap.toml of tap {tap_id:?} (keep it secret)\n[tap]\nid = \"{tap_id}\"\n\n[uplink]\ncollector = \"{collector}\"\nkey = \"{hex}\"\n"
        ),
        collector: format!(
            "# collector.toml: add to [taps] (keep it secret)\n[taps.\"{tap_id}\"]\nkey = \"{hex}\"\n"
        ),
    }
}

pub fn run(
    tap_id: &str,
    collector: &str,
    out_dir: Option<&Path>,
    force: bool,
) -> Result<(), String> {
    // Tap ids name the files: no path, no hidden file, no quote.
    pitap_wire::codec::check_tap_id(tap_id).map_err(|e| format!("--tap-id: {e}"))?;
    let key = Key::from_bytes(random_bytes::<32>()?);
    let s = snippets(tap_id, collector, &key);
    match out_dir {
        None => {
            println!("{}\n{}", s.tap, s.collector);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let files = [
                (dir.join(format!("{tap_id}.tap.toml")), &s.tap),
                (dir.join(format!("{tap_id}.collector.toml")), &s.collector),
            ];
            // A key in use is not replaced by accident: both checked first.
            if !force {
                if let Some((path, _)) = files.iter().find(|(p, _)| p.exists()) {
                    return Err(format!(
                        "{} exists (it holds a key in use?): --force replaces it",
                        path.display()
                    ));
                }
            }
            for (path, text) in &files {
                write_private(path, text, force)?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// `pitap keygen --update`: the key that signs update images, separate
/// from every uplink key. `update.key` holds its secret half (only its
/// owner reads it); the public half is what taps trust.
pub fn run_update(out_dir: Option<&Path>, force: bool) -> Result<(), String> {
    let key = pitap_wire::update::signing_key(random_bytes::<32>()?);
    let text = update_key_text(&key);
    match out_dir {
        None => print!("{text}"),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("update.key");
            if path.exists() && !force {
                return Err(format!(
                    "{} exists (it signs updates taps trust?): --force replaces it",
                    path.display()
                ));
            }
            write_private(&path, &text, force)?;
            println!("wrote {}", path.display());
            println!(
                "for each tap's pitap.toml (the key it trusts):\n[update]\nkey = \"{}\"",
                pitap_wire::update::verifying_key_hex(&key)
            );
        }
    }
    Ok(())
}

fn update_key_text(key: &ed25519_dalek::SigningKey) -> String {
    let secret = pitap_wire::update::signing_key_hex(key);
    format!(
        "# PiTap update signing key (keep it secret): it signs the images taps boot.\n\
         secret = \"{secret}\"\n\
         # What taps trust.\n\
         public = \"{}\"\n",
        pitap_wire::update::verifying_key_hex(key)
    )
}

/// Reads `update.key`: its secret half, checked against the public half
/// written beside it (a damaged file is refused, not used to sign).
pub fn load_update_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        secret: String,
        public: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = pitap_wire::update::signing_key_from_hex(&f.secret)
        .map_err(|e| format!("{}: secret: {e}", path.display()))?;
    if pitap_wire::update::verifying_key_hex(&key) != f.public.trim() {
        return Err(format!(
            "{}: the public key is not the secret's (a damaged file?)",
            path.display()
        ));
    }
    Ok(key)
}

/// Writes a new file only its owner can read (it holds a key); `replace`
/// removes one that is there first, so its permissions go with it.
fn write_private(path: &Path, text: &str, replace: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("{}: {e}", path.display()))
            }
            _ => {}
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CollectorConfig;

    #[test]
    fn both_snippets_parse_and_share_the_key() {
        let key = Key::from_bytes([9; 32]);
        let s = snippets("rack3", "192.0.2.10:4739", &key);
        let collector = CollectorConfig::parse(&s.collector).unwrap();
        assert_eq!(collector.keys().unwrap()["rack3"], key);
        assert!(s.tap.contains(&format!("key = \"{}\"", key.to_hex())));
        assert!(s.tap.contains("collector = \"192.0.2.10:4739\""));
    }

    #[test]
    fn an_update_key_is_written_private_read_back_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pitap-updkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        run_update(Some(&dir), false).unwrap();
        let path = dir.join("update.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = load_update_key(&path).unwrap();
        // It signs manifests the public half verifies.
        let text = std::fs::read_to_string(&path).unwrap();
        let public = text
            .lines()
            .find_map(|l| l.strip_prefix("public = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        let m = pitap_wire::update::Manifest::of("0.2.0", b"image").unwrap();
        let vk = pitap_wire::update::verifying_key_from_hex(public).unwrap();
        assert_eq!(
            pitap_wire::update::Manifest::verify(&m.sign(&key), &vk).unwrap(),
            m
        );
        assert!(run_update(Some(&dir), false)
            .unwrap_err()
            .contains("--force"));
        // A public half that is not the secret's is refused.
        let other = update_key_text(&pitap_wire::update::signing_key([5; 32]));
        let other_public = other.lines().find(|l| l.starts_with("public")).unwrap();
        let mixed: String = text
            .lines()
            .map(|l| {
                if l.starts_with("public") {
                    other_public
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, mixed).unwrap();
        assert!(load_update_key(&path)
            .unwrap_err()
            .contains("not the secret's"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_files_stay_in_their_directory_and_are_not_replaced_unasked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pitap-keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for bad in [
            "../evil",
            ".hidden",
            "a/b",
            "",
            "tap\"quote",
            &"x".repeat(33),
        ] {
            let e = run(bad, "192.0.2.10:4739", Some(&dir), false).unwrap_err();
            assert!(e.starts_with("--tap-id:"), "{bad:?}: {e}");
        }
        assert!(!dir.join("../evil.tap.toml").exists());
        run("rack3", "192.0.2.10:4739", Some(&dir), false).unwrap();
        let tap = dir.join("rack3.tap.toml");
        let first = std::fs::read_to_string(&tap).unwrap();
        let e = run("rack3", "192.0.2.10:4739", Some(&dir), false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&tap).unwrap(), first, "kept");
        // --force replaces it, and a file made readable by others is
        // replaced by one only its owner reads.
        std::fs::set_permissions(&tap, std::fs::Permissions::from_mode(0o644)).unwrap();
        run("rack3", "192.0.2.10:4739", Some(&dir), true).unwrap();
        assert_ne!(std::fs::read_to_string(&tap).unwrap(), first);
        for f in ["rack3.tap.toml", "rack3.collector.toml"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
