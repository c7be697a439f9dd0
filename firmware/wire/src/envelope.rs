//! The envelope every datagram between a tap and a collector travels in.
//!
//! ```text
//! "PTAP" | version | kind | tap id length | tap id | boot (16) | counter (8, BE)
//!        | challenge (8) | payload | tag (16)
//! ```
//!
//! Version 4 is sealed with XChaCha20-Poly1305 under the tap's pre-shared
//! key: the clear header (everything before the payload) is authenticated
//! as associated data, the payload is encrypted. The 24-byte nonce is the
//! sender's boot value (16 random bytes drawn at every process start) and a
//! counter that counts up from 0 in that boot, so nonces never repeat, across
//! reboots included, without any state kept on the tap. The clear tap id lets
//! the collector pick the key; the boot and counter let it refuse replays
//! within a boot. The challenge is the value the collector gave this boot
//! of the tap (zero in a `Hello`, which asks for one): the collector takes a
//! boot's data only with a challenge it made for that boot since the tap's
//! last reboot, so datagrams of a past boot, replayed whenever and into
//! whatever collector, are refused.
//!
//! Version 5 is the same envelope without encryption or tag, for tests only:
//! both ends must be configured to accept it. Versions 2 and 3 (before the
//! challenge) are refused as unsupported.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};

use crate::codec::MAX_TAP_ID;
use crate::WireError;

pub use crate::codec::MAGIC;
pub const SEALED: u8 = 4;
pub const PLAINTEXT: u8 = 5;
pub const TAG_LEN: usize = 16;
pub const CHALLENGE_LEN: usize = 8;
/// The longest clear header (a 32-byte tap id).
pub const MAX_HEADER: usize = 4 + 3 + MAX_TAP_ID + 16 + 8 + CHALLENGE_LEN;
/// The most a sealed envelope adds to its payload.
pub const MAX_OVERHEAD: usize = MAX_HEADER + TAG_LEN;

/// What a collector asks a boot of a tap to carry in its datagrams.
pub type Challenge = [u8; CHALLENGE_LEN];

crate::named_enum! {
    /// What a datagram carries.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum DatagramKind {
        /// Flow records (tap to collector).
        Batch = 1 => "batch",
        /// The collector's answer: challenge, time, acknowledgements
        /// (collector to tap).
        Reply = 2 => "reply",
        /// The tap's counters (tap to collector).
        Health = 3 => "health",
        /// A tap asking for a challenge (and the time): at its start, and
        /// whenever it has nothing else to send and no answer yet.
        Hello = 4 => "hello",
        /// A tap that stops: everything it sent is acknowledged (tap to
        /// collector; not answered).
        Goodbye = 5 => "goodbye",
        /// A piece of the answer to a packet request (tap to collector).
        Packets = 6 => "packets",
        /// Where a tap stands with updates, and the image bytes it wants
        /// next (tap to collector; answered with `UpdateData`).
        UpdateStatus = 7 => "update status",
        /// The update the collector offers and a piece of its image
        /// (collector to tap).
        UpdateData = 8 => "update data",
    }
}

/// A 256-bit pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Key, &'static str> {
        let key = hex32(text).ok_or("a key is 64 hex digits (32 bytes)")?;
        if key == [0; 32] {
            return Err("an all-zero key is no secret (pitap keygen makes one)");
        }
        Ok(Key(key))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// Bytes as lower-case hex digits, the way keys are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits (surrounding white space allowed).
pub(crate) fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    // from_str_radix would take "+f" as a byte: digits only.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// The clear header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub sealed: bool,
    pub kind: DatagramKind,
    pub tap_id: &'a str,
    /// The sender's per-boot random value.
    pub boot: [u8; 16],
    pub counter: u64,
    /// The collector's challenge for this boot of the tap (zero in a Hello
    /// and in the collector's own datagrams).
    pub challenge: Challenge,
}

impl Header<'_> {
    /// The first 8 bytes of the boot value, as batch headers carry it.
    pub fn boot_id(&self) -> u64 {
        boot_id(&self.boot)
    }
}

pub fn boot_id(boot: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&boot[..8]);
    u64::from_be_bytes(b)
}

/// Reads the clear header; returns it and its length.
pub fn parse(datagram: &[u8]) -> Result<(Header<'_>, usize), WireError> {
    crate::codec::check_magic(datagram, 7)?;
    let sealed = match datagram[4] {
        SEALED => true,
        PLAINTEXT => false,
        v => return Err(WireError::UnsupportedVersion(v)),
    };
    let kind = DatagramKind::from_u8(datagram[5]).ok_or(WireError::Malformed("kind"))?;
    let id_len = usize::from(datagram[6]);
    if id_len == 0 || id_len > MAX_TAP_ID {
        return Err(WireError::Malformed("tap id"));
    }
    let end = 7 + id_len + 24 + CHALLENGE_LEN;
    if datagram.len() < end + if sealed { TAG_LEN } else { 0 } {
        return Err(WireError::Truncated);
    }
    let tap_id = core::str::from_utf8(&datagram[7..7 + id_len])
        .map_err(|_| WireError::Malformed("tap id"))?;
    let at = 7 + id_len;
    let mut boot = [0u8; 16];
    boot.copy_from_slice(&datagram[at..at + 16]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&datagram[at + 16..at + 24]);
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge.copy_from_slice(&datagram[at + 24..end]);
    Ok((
        Header {
            sealed,
            kind,
            tap_id,
            boot,
            counter: u64::from_be_bytes(counter),
            challenge,
        },
        end,
    ))
}

fn nonce(boot: &[u8; 16], counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(boot);
    n[16..].copy_from_slice(&counter.to_be_bytes());
    XNonce::from(n)
}

/// Builds a datagram: sealed under `key`, or plaintext when `key` is None.
pub fn seal(header: &Header<'_>, key: Option<&Key>, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let id = header.tap_id.as_bytes();
    if id.is_empty() || id.len() > MAX_TAP_ID {
        return Err(WireError::TapIdTooLong);
    }
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(if key.is_some() { SEALED } else { PLAINTEXT });
    out.push(header.kind as u8);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(&header.boot);
    out.extend_from_slice(&header.counter.to_be_bytes());
    out.extend_from_slice(&header.challenge);
    let header_len = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = key {
        let cipher = XChaCha20Poly1305::new(&key.0.into());
        let (aad, body) = out.split_at_mut(header_len);
        let tag = cipher
            .encrypt_in_place_detached(&nonce(&header.boot, header.counter), aad, body)
            .map_err(|_| WireError::Malformed("payload too long to seal"))?;
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// The challenge a collector gives boot `boot` of a tap in `generation`:
/// the first bytes of XChaCha20's keystream under the collector's secret
/// with (boot, generation) as the nonce, a pseudo-random function of both.
/// Nobody without the secret can predict it, a new generation (the next
/// reboot) or a new secret (a collector that lost its state) changes it.
pub fn derive_challenge(secret: &Key, boot: &[u8; 16], generation: u64) -> Challenge {
    let cipher = XChaCha20Poly1305::new(&secret.0.into());
    let mut block = [0u8; CHALLENGE_LEN];
    // Encrypting zeros yields the keystream; the tag is not needed.
    let _ = cipher.encrypt_in_place_detached(&nonce(boot, generation), b"challenge", &mut block);
    block
}

/// Checks and opens a datagram. A sealed one needs the key; a plaintext one
/// is only accepted with `allow_plaintext`. Returns the header and payload.
pub fn open<'a>(
    datagram: &'a [u8],
    key: Option<&Key>,
    allow_plaintext: bool,
) -> Result<(Header<'a>, Vec<u8>), WireError> {
    let (header, header_len) = parse(datagram)?;
    if !header.sealed {
        if !allow_plaintext {
            return Err(WireError::PlaintextRefused);
        }
        return Ok((header, datagram[header_len..].to_vec()));
    }
    let key = key.ok_or(WireError::Forged)?;
    let (aad, rest) = datagram.split_at(header_len);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = body.to_vec();
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    cipher
        .decrypt_in_place_detached(
            &nonce(&header.boot, header.counter),
            aad,
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| WireError::Forged)?;
    Ok((header, plain))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_hex_digits_and_not_zero() {
        let good = "ab".repeat(32);
        assert!(super::Key::from_hex(&good).is_ok());
        // u8::from_str_radix takes "+a"; a key does not.
        let plus = format!("+a{}", &good[2..]);
        assert!(super::Key::from_hex(&plus).is_err());
        assert!(super::Key::from_hex(&"0".repeat(64)).is_err());
        assert!(super::Key::from_hex(&"g".repeat(64)).is_err());
    }

    use super::*;

    fn header(kind: DatagramKind) -> Header<'static> {
        Header {
            sealed: true,
            kind,
            tap_id: "rack3",
            boot: [7; 16],
            counter: 42,
            challenge: [3; CHALLENGE_LEN],
        }
    }

    #[test]
    fn sealed_round_trip_and_tamper_detection() {
        let key = Key::from_bytes([1; 32]);
        let dg = seal(&header(DatagramKind::Batch), Some(&key), b"flow records").unwrap();
        let (h, payload) = open(&dg, Some(&key), false).unwrap();
        assert_eq!(
            (h.kind, h.tap_id, h.counter),
            (DatagramKind::Batch, "rack3", 42)
        );
        assert_eq!(h.challenge, [3; CHALLENGE_LEN]);
        assert_eq!(payload, b"flow records");
        assert!(
            !dg.windows(12).any(|w| w == b"flow records"),
            "payload is encrypted"
        );
        // Every single bit flipped anywhere is caught.
        for i in 0..dg.len() {
            let mut bad = dg.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad, Some(&key), false).is_err(), "bit at byte {i}");
        }
        let other = Key::from_bytes([2; 32]);
        assert_eq!(
            open(&dg, Some(&other), false).err(),
            Some(WireError::Forged)
        );
        assert_eq!(
            open(&dg[..dg.len() - 1], Some(&key), false).err(),
            Some(WireError::Forged)
        );
        assert_eq!(
            open(&dg[..20], Some(&key), false).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn plaintext_needs_consent() {
        let dg = seal(&header(DatagramKind::Reply), None, b"ack").unwrap();
        assert_eq!(
            open(&dg, None, false).err(),
            Some(WireError::PlaintextRefused)
        );
        assert_eq!(open(&dg, None, true).unwrap().1, b"ack");
    }

    #[test]
    fn envelopes_before_the_challenge_are_unsupported() {
        let key = Key::from_bytes([1; 32]);
        let mut dg = seal(&header(DatagramKind::Batch), Some(&key), b"x").unwrap();
        for old in [2u8, 3] {
            dg[4] = old;
            assert_eq!(
                open(&dg, Some(&key), false).err(),
                Some(WireError::UnsupportedVersion(old))
            );
        }
    }

    #[test]
    fn challenges_differ_by_boot_generation_and_secret() {
        let a = Key::from_bytes([1; 32]);
        let b = Key::from_bytes([2; 32]);
        let c = derive_challenge(&a, &[5; 16], 0);
        assert_eq!(c, derive_challenge(&a, &[5; 16], 0), "deterministic");
        assert_ne!(c, derive_challenge(&a, &[5; 16], 1));
        assert_ne!(c, derive_challenge(&a, &[6; 16], 0));
        assert_ne!(c, derive_challenge(&b, &[5; 16], 0));
        assert_ne!(c, [0; CHALLENGE_LEN]);
    }

    #[test]
    fn keys_in_hex() {
        let key = Key::from_bytes([0xab; 32]);
        assert_eq!(Key::from_hex(&key.to_hex()), Ok(key));
        assert!(Key::from_hex("abc").is_err());
        assert!(Key::from_hex(&"zz".repeat(32)).is_err());
    }
}
