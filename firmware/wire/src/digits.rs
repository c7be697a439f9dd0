//! Numbers and addresses as text, appended to a byte buffer: the digits of
//! the text line ([`crate::format`]), which `pitapd --print` writes for
//! every flow. Decimal by `itoa`; zero-padded fields two digits at a time
//! from a table, and IPv6 compressed by hand: a loop of one division a
//! digit and `core::fmt` for IPv6 were most of what a line cost. The tests
//! hold every function to what `fmt` prints.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::vec::Vec;

/// "00" to "99".
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

fn pair(n: u64) -> [u8; 2] {
    let i = (n % 100) as usize * 2;
    [PAIRS[i], PAIRS[i + 1]]
}

/// `n` in decimal, as `{n}` prints it.
pub fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n % 100` in two digits, as `{:02}` prints it.
pub fn push_2(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(&pair(n));
}

/// `n % 1000` in three digits, as `{:03}` prints it.
pub fn push_3(buf: &mut Vec<u8>, n: u64) {
    let n = n % 1000;
    let [a, b] = pair(n);
    buf.extend_from_slice(&[b'0' + (n / 100) as u8, a, b]);
}

/// `a` as `{a}` prints it.
pub fn push_ipv4(buf: &mut Vec<u8>, a: Ipv4Addr) {
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        let o = u64::from(octet);
        if o >= 100 {
            push_3(buf, o);
        } else if o >= 10 {
            push_2(buf, o);
        } else {
            buf.push(b'0' + octet);
        }
    }
}

/// `s` in hexadecimal without leading zeros, as `{:x}` prints it.
fn push_hex(buf: &mut Vec<u8>, s: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = (s >> shift) & 0xf;
        if d != 0 || started || shift == 0 {
            started = true;
            buf.push(HEX[usize::from(d)]);
        }
    }
}

fn push_groups(buf: &mut Vec<u8>, groups: &[u16]) {
    for (i, &g) in groups.iter().enumerate() {
        if i > 0 {
            buf.push(b':');
        }
        push_hex(buf, g);
    }
}

/// `a` as `{a}` prints it (RFC 5952): an IPv4-mapped address with its
/// IPv4 part dotted, else the first longest run of two or more zero
/// groups as `::`.
pub fn push_ipv6(buf: &mut Vec<u8>, a: Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        buf.extend_from_slice(b"::ffff:");
        push_ipv4(buf, v4);
        return;
    }
    let groups = a.segments();
    let (mut best, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run_start, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if best_len > 1 {
        push_groups(buf, &groups[..best]);
        buf.extend_from_slice(b"::");
        push_groups(buf, &groups[best + best_len..]);
    } else {
        push_groups(buf, &groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;
    use std::format;
    use std::string::ToString;

    fn text(f: impl Fn(&mut Vec<u8>)) -> std::string::String {
        let mut buf = Vec::new();
        f(&mut buf);
        std::string::String::from_utf8(buf).unwrap()
    }

    #[test]
    fn numbers_print_as_fmt_prints_them() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut cases: Vec<u64> = (0..1000).collect();
        cases.extend([u64::MAX, u64::MAX - 1, 1 << 32, 10_000_000_000_000_000_000]);
        for p in 1..20 {
            let ten = 10u64.pow(p);
            cases.extend([ten - 1, ten, ten + 1]);
        }
        for _ in 0..10_000 {
            let v = xorshift(&mut x);
            cases.push(v >> (v % 64));
        }
        for n in cases {
            assert_eq!(text(|b| push_u64(b, n)), n.to_string());
            assert_eq!(text(|b| push_2(b, n)), format!("{:02}", n % 100));
            assert_eq!(text(|b| push_3(b, n)), format!("{:03}", n % 1000));
        }
    }

    #[test]
    fn addresses_print_as_fmt_prints_them() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let v4 = Ipv4Addr::from(xorshift(&mut x) as u32 >> (xorshift(&mut x) % 32));
            assert_eq!(text(|b| push_ipv4(b, v4)), v4.to_string());
            // Groups zero, small or large at random: every run of zeros,
            // ties between runs, mapped and compatible IPv4 forms.
            let mut groups = [0u16; 8];
            for g in &mut groups {
                *g = match xorshift(&mut x) % 4 {
                    0 | 1 => 0,
                    2 => (xorshift(&mut x) % 16) as u16,
                    _ => xorshift(&mut x) as u16,
                };
            }
            if xorshift(&mut x).is_multiple_of(8) {
                groups[..5].fill(0);
                groups[5] = 0xffff;
            }
            let v6 = Ipv6Addr::from(groups);
            assert_eq!(text(|b| push_ipv6(b, v6)), v6.to_string(), "{groups:?}");
        }
        for v6 in [
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            "::ffff:0.0.0.0".parse().unwrap(),
            "::1.2.3.4".parse().unwrap(),
            "1::".parse().unwrap(),
            "1:0:0:2:0:0:0:3".parse().unwrap(),
            "1:0:0:2:0:0:3:4".parse().unwrap(),
            "1:2:3:4:5:6:7:0".parse().unwrap(),
        ] {
            assert_eq!(text(|b| push_ipv6(b, v6)), v6.to_string());
        }
    }
}
