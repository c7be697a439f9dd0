//! Signed updates: the manifest `pitap update` sends with a new boot
//! partition image, and what a tap checks before it reboots into one.
//!
//! The manifest names the version, the image's size and its SHA-256, and
//! is signed with Ed25519 by the update key (`pitap keygen --update`),
//! which is not the uplink's key: whoever holds a tap's uplink key can
//! read and forge its flows, but cannot make it boot an image. A tap
//! checks the signature when the manifest arrives (before it writes
//! anything) and the image's size and digest as it arrives
//! ([`ImageCheck`]), so a forged, damaged or short image is refused before
//! any reboot.
//!
//! Manifest on the wire: `PTUPD1` | u8 version length | version (UTF-8)
//! | u64 size (big-endian) | 32 bytes SHA-256 | 64 bytes signature over
//! everything before it.

use ed25519_dalek::{Signature, Signer};
/// The key types, for those who keep one.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 6] = b"PTUPD1";
/// Longest version string a manifest carries.
pub const MAX_VERSION: usize = 64;
const SIGNATURE_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub version: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// Not a manifest (or a version of it this tap does not know).
    BadMagic,
    /// Shorter than its fields say.
    Truncated,
    /// Longer than its fields say.
    TrailingBytes,
    /// The version is empty, too long, or not printable UTF-8.
    BadVersion,
    /// Not signed by the key this tap trusts (or altered after signing).
    BadSignature,
    /// The image would not fit the partition it is for.
    TooLarge { size: u64, room: u64 },
    /// Bytes at an offset other than the next one expected.
    OutOfOrder { offset: u64, expected: u64 },
    /// More bytes than the manifest says.
    Overrun,
    /// Fewer bytes than the manifest says.
    Short { got: u64, want: u64 },
    /// The image's SHA-256 is not the manifest's.
    Digest,
}

impl core::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpdateError::BadMagic => write!(f, "not an update manifest"),
            UpdateError::Truncated => write!(f, "manifest truncated"),
            UpdateError::TrailingBytes => write!(f, "bytes after the manifest's signature"),
            UpdateError::BadVersion => write!(
                f,
                "version: 1 to {MAX_VERSION} printable characters expected"
            ),
            UpdateError::BadSignature => write!(f, "signature does not verify with the update key"),
            UpdateError::TooLarge { size, room } => {
                write!(
                    f,
                    "image of {size} bytes does not fit a partition of {room}"
                )
            }
            UpdateError::OutOfOrder { offset, expected } => {
                write!(f, "bytes at {offset}, expected {expected}")
            }
            UpdateError::Overrun => write!(f, "more bytes than the manifest's size"),
            UpdateError::Short { got, want } => write!(f, "{got} of {want} bytes"),
            UpdateError::Digest => write!(f, "SHA-256 differs from the manifest's"),
        }
    }
}

impl std::error::Error for UpdateError {}

impl Manifest {
    /// The manifest of `image`, named `version`.
    pub fn of(version: &str, image: &[u8]) -> Result<Manifest, UpdateError> {
        check_version(version)?;
        Ok(Manifest {
            version: version.to_string(),
            size: image.len() as u64,
            sha256: Sha256::digest(image).into(),
        })
    }

    /// The signed part.
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAGIC.len() + 1 + self.version.len() + 8 + 32);
        b.extend_from_slice(MAGIC);
        b.push(self.version.len() as u8);
        b.extend_from_slice(self.version.as_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.sha256);
        b
    }

    /// The manifest signed with the update key's secret half.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let mut b = self.body();
        let signature = key.sign(&b);
        b.extend_from_slice(&signature.to_bytes());
        b
    }

    /// Parses a signed manifest and checks its signature with `key`: a
    /// manifest is used only once this has passed.
    pub fn verify(bytes: &[u8], key: &VerifyingKey) -> Result<Manifest, UpdateError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(UpdateError::BadMagic)?;
        let (&len, rest) = rest.split_first().ok_or(UpdateError::Truncated)?;
        let len = usize::from(len);
        let need = len + 8 + 32 + SIGNATURE_LEN;
        if rest.len() < need {
            return Err(UpdateError::Truncated);
        }
        if rest.len() > need {
            return Err(UpdateError::TrailingBytes);
        }
        let (version, rest) = rest.split_at(len);
        let (size, rest) = rest.split_at(8);
        let (sha256, signature) = rest.split_at(32);
        let body = &bytes[..bytes.len() - SIGNATURE_LEN];
        let signature = Signature::from_slice(signature).map_err(|_| UpdateError::BadSignature)?;
        // Strict: no malleable signatures, no weak keys.
        key.verify_strict(body, &signature)
            .map_err(|_| UpdateError::BadSignature)?;
        let version = std::str::from_utf8(version).map_err(|_| UpdateError::BadVersion)?;
        check_version(version)?;
        let mut size_bytes = [0u8; 8];
        size_bytes.copy_from_slice(size);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(sha256);
        Ok(Manifest {
            version: version.to_string(),
            size: u64::from_be_bytes(size_bytes),
            sha256: digest,
        })
    }
}

fn check_version(v: &str) -> Result<(), UpdateError> {
    if v.is_empty() || v.len() > MAX_VERSION || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(UpdateError::BadVersion);
    }
    Ok(())
}

/// The image checked as it arrives, in order: its size against the
/// manifest's and the partition's, its digest at the end.
pub struct ImageCheck {
    manifest: Manifest,
    hasher: Sha256,
    received: u64,
}

impl ImageCheck {
    /// Starts checking an image for `manifest` bound for a partition of
    /// `room` bytes.
    pub fn new(manifest: Manifest, room: u64) -> Result<ImageCheck, UpdateError> {
        if manifest.size > room {
            return Err(UpdateError::TooLarge {
                size: manifest.size,
                room,
            });
        }
        Ok(ImageCheck {
            manifest,
            hasher: Sha256::new(),
            received: 0,
        })
    }

    /// The next offset wanted (what a resumed transfer asks for).
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Takes the bytes at `offset`, which must be the next ones.
    pub fn take(&mut self, offset: u64, bytes: &[u8]) -> Result<(), UpdateError> {
        if offset != self.received {
            return Err(UpdateError::OutOfOrder {
                offset,
                expected: self.received,
            });
        }
        let end = self.received + bytes.len() as u64;
        if end > self.manifest.size {
            return Err(UpdateError::Overrun);
        }
        self.hasher.update(bytes);
        self.received = end;
        Ok(())
    }

    /// Whether every byte arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.manifest.size
    }

    /// The whole image arrived and is the one the manifest signed.
    pub fn finish(self) -> Result<Manifest, UpdateError> {
        if self.received != self.manifest.size {
            return Err(UpdateError::Short {
                got: self.received,
                want: self.manifest.size,
            });
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        if digest != self.manifest.sha256 {
            return Err(UpdateError::Digest);
        }
        Ok(self.manifest)
    }
}

/// How a tap and its collector name an offer: the SHA-256 of the signed
/// manifest's bytes as sent (whether or not it verifies).
pub fn offer_id(signed_manifest: &[u8]) -> [u8; 32] {
    Sha256::digest(signed_manifest).into()
}

/// An update key's public half as configuration carries it (hex).
pub fn verifying_key_from_hex(hex: &str) -> Result<VerifyingKey, String> {
    let bytes = crate::envelope::hex32(hex)
        .ok_or("an update key is 64 hex digits (pitap keygen --update)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_string())
}

/// An update key's secret half as `update.key` carries it (hex).
pub fn signing_key_from_hex(hex: &str) -> Result<SigningKey, String> {
    crate::envelope::hex32(hex)
        .map(signing_key)
        .ok_or_else(|| "an update key is 64 hex digits (pitap keygen --update)".to_string())
}

/// An update key from its 32-byte secret seed.
pub fn signing_key(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// Hex of a key's public half, for the tap's configuration.
pub fn verifying_key_hex(key: &SigningKey) -> String {
    crate::envelope::hex(&key.verifying_key().to_bytes())
}

/// Hex of a key's secret half, as `update.key` keeps it.
pub fn signing_key_hex(key: &SigningKey) -> String {
    crate::envelope::hex(&key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        signing_key([n; 32])
    }

    fn image() -> Vec<u8> {
        (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_signed_manifest_verifies_and_its_image_checks() {
        let img = image();
        let m = Manifest::of("0.2.0", &img).unwrap();
        let signed = m.sign(&key(1));
        let got = Manifest::verify(&signed, &key(1).verifying_key()).unwrap();
        assert_eq!(got, m);
        let mut check = ImageCheck::new(got, 1 << 20).unwrap();
        for (i, chunk) in img.chunks(1200).enumerate() {
            check.take(i as u64 * 1200, chunk).unwrap();
        }
        assert!(check.is_complete());
        assert_eq!(check.finish().unwrap().version, "0.2.0");
    }

    #[test]
    fn another_key_or_any_changed_byte_is_refused() {
        let img = image();
        let signed = Manifest::of("0.2.0", &img).unwrap().sign(&key(1));
        assert_eq!(
            Manifest::verify(&signed, &key(2).verifying_key()),
            Err(UpdateError::BadSignature)
        );
        // Every byte flipped, one at a time: never a manifest.
        for i in 0..signed.len() {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            assert!(
                Manifest::verify(&bad, &key(1).verifying_key()).is_err(),
                "byte {i} flipped and accepted"
            );
        }
        for n in 0..signed.len() {
            assert!(Manifest::verify(&signed[..n], &key(1).verifying_key()).is_err());
        }
        let mut long = signed.clone();
        long.push(0);
        assert_eq!(
            Manifest::verify(&long, &key(1).verifying_key()),
            Err(UpdateError::TrailingBytes)
        );
    }

    #[test]
    fn a_short_damaged_or_oversized_image_is_refused() {
        let img = image();
        let m = Manifest::of("0.2.0", &img).unwrap();
        // Short: all but the last byte.
        let mut check = ImageCheck::new(m.clone(), 1 << 20).unwrap();
        check.take(0, &img[..img.len() - 1]).unwrap();
        assert_eq!(
            check.finish().err(),
            Some(UpdateError::Short {
                got: img.len() as u64 - 1,
                want: img.len() as u64
            })
        );
        // One bit changed in transit.
        let mut damaged = img.clone();
        damaged[5000] ^= 0x80;
        let mut check = ImageCheck::new(m.clone(), 1 << 20).unwrap();
        check.take(0, &damaged).unwrap();
        assert_eq!(check.finish().err(), Some(UpdateError::Digest));
        // Past the end, out of order, too large for the partition.
        let mut check = ImageCheck::new(m.clone(), 1 << 20).unwrap();
        assert_eq!(
            check.take(0, &[img.clone(), vec![0]].concat()),
            Err(UpdateError::Overrun)
        );
        assert_eq!(
            check.take(10, &img[10..20]),
            Err(UpdateError::OutOfOrder {
                offset: 10,
                expected: 0
            })
        );
        assert!(matches!(
            ImageCheck::new(m, 1000),
            Err(UpdateError::TooLarge { .. })
        ));
    }

    #[test]
    fn versions_are_short_printable_words() {
        assert_eq!(Manifest::of("", b"x").err(), Some(UpdateError::BadVersion));
        assert_eq!(
            Manifest::of("1 0", b"x").err(),
            Some(UpdateError::BadVersion)
        );
        assert_eq!(
            Manifest::of(&"9".repeat(65), b"x").err(),
            Some(UpdateError::BadVersion)
        );
        assert!(Manifest::of("0.2.0+g1234abc", b"x").is_ok());
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let k = key(9);
        let hex = verifying_key_hex(&k);
        assert_eq!(hex.len(), 64);
        assert_eq!(verifying_key_from_hex(&hex).unwrap(), k.verifying_key());
        assert!(verifying_key_from_hex("abc").is_err());
    }
}
