//! A media type from an object's first bytes, the way libmagic (which
//! Zeek and `file` use) names the types a tap meets most. Hand-written: the
//! Rust sniffing crates know binary formats only, and a tap needs a page of
//! signatures, not a database.

/// How many first bytes the sniffing looks at.
pub const SNIFF_LEN: usize = 64;

/// Binary signatures: (offset, bytes, type).
const MAGIC: [(usize, &[u8], &str); 17] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"BM", "image/bmp"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/x-rar"),
    (0, b"MZ", "application/x-dosexec"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"\xca\xfe\xba\xbe", "application/java-vm"),
    (0, b"ID3", "audio/mpeg"),
    (4, b"ftyp", "video/mp4"),
];

/// Text signatures, compared without case after leading white space.
const TEXT: [(&[u8], &str); 7] = [
    (b"<!doctype html", "text/html"),
    (b"<html", "text/html"),
    (b"<head", "text/html"),
    (b"<svg", "image/svg+xml"),
    (b"<?xml", "text/xml"),
    (b"-----begin pgp", "application/pgp-signature"),
    (b"%!ps", "application/postscript"),
];

/// The media type of an object that starts with `first`.
pub fn sniff(first: &[u8]) -> &'static str {
    for (at, magic, mime) in MAGIC {
        if first.get(at..at + magic.len()) == Some(magic) {
            return mime;
        }
    }
    let text = first.trim_ascii_start();
    for (magic, mime) in TEXT {
        if text.len() >= magic.len() && text[..magic.len()].eq_ignore_ascii_case(magic) {
            return mime;
        }
    }
    if first.is_empty() {
        return "";
    }
    // Text when every byte is printable ASCII, white space or part of UTF-8.
    if first
        .iter()
        .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        && utf8_or_cut(first)
    {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// UTF-8 that is valid, or cut inside its last character (the sniffed
/// bytes end wherever they end).
fn utf8_or_cut(bytes: &[u8]) -> bool {
    match core::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0"), "image/png");
        assert_eq!(sniff(b"GIF89a\x0b\x00"), "image/gif");
        assert_eq!(sniff(b"\n  <!DOCTYPE HTML PUBLIC"), "text/html");
        assert_eq!(sniff(b"body { color: red }"), "text/plain");
        assert_eq!(sniff(b"\x00\x01\x02\xff"), "application/octet-stream");
        assert_eq!(sniff("caf\u{e9}".as_bytes()), "text/plain");
        assert_eq!(sniff(&"caf\u{e9}".as_bytes()[..4]), "text/plain");
        assert_eq!(sniff(b""), "");
    }
}
