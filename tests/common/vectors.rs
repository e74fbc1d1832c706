//! Reading test vectors written as hex, shared by the MIC test binaries.

use ran_routing::mic::AesKey;

/// The bytes spelled by an even number of hex digits.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// An AES-128 key from 32 hex digits.
pub fn key(s: &str) -> AesKey {
    s.parse().unwrap()
}
