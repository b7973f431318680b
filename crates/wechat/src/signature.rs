//! WeChat request signatures: `sha1(sort(parts).join(""))` as lowercase hex, compared in
//! constant time.

use subtle::ConstantTimeEq;

/// `sha1` of the lexicographically sorted parts, concatenated, as 40 lowercase hex digits.
///
/// Plain mode signs `[token, timestamp, nonce]`; safe mode's `msg_signature` signs
/// `[token, timestamp, nonce, Encrypt]`.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut h = sha1_smol::Sha1::new();
    for p in sorted {
        h.update(p.as_bytes());
    }
    h.digest().to_string()
}

/// Whether `signature` is WeChat's signature of `parts`. Case-insensitive hex; constant time
/// in the content of the signature (its length is not secret: it is always 40).
pub fn check(parts: &[&str], signature: &str) -> bool {
    let given = signature.to_ascii_lowercase();
    bool::from(sign(parts).as_bytes().ct_eq(given.as_bytes()))
}

/// Plain-mode check of the URL check and of every message: `signature` over
/// `token`, `timestamp`, `nonce`.
pub fn check_signature(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    check(&[token, timestamp, nonce], signature)
}

/// Constant-time comparison of two secrets of arbitrary length (a bearer token): both are
/// hashed first, so neither the position of a difference nor the secret's length leaks.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    let a = sha1_smol::Sha1::from(given.as_bytes()).digest().bytes();
    let b = sha1_smol::Sha1::from(expected.as_bytes()).digest().bytes();
    bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_spec_example() {
        // Known answers from WeChat's documentation and the SDKs that test against it.
        assert_eq!(sign(&["test", "1410685589", "test"]), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
        assert_eq!(sign(&["AAAAA", "1714037059", "486452656"]), "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        assert!(check_signature("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"));
    }

    #[test]
    fn sign_is_sha1_across_block_and_padding_boundaries() {
        // FIPS 180 examples: one block, a message whose padding needs a second block (56 bytes,
        // here also fed in two updates), and a million bytes.
        assert_eq!(sign(&["abc"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(sign(&[two_blocks]), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let (a, b) = two_blocks.split_at(20);
        assert_eq!(sign(&[b, a]), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        assert_eq!(sign(&["a".repeat(1_000_000).as_str()]), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
        assert_eq!(sign(&[""]), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn msg_signature_matches_spec_example() {
        let encrypt = include_str!("../../../tests/fixtures/safe/encrypt_kat.txt").trim();
        assert_eq!(sign(&["QDG6eK", "1409735669", "1320562132", encrypt]), "901aa526f5528554dc40e8ec44ec1795f9368350");
    }

    #[test]
    fn check_signature_rejects_wrong_short_long_and_non_hex() {
        let good = "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff";
        let cases = [
            "",
            "f21891de",
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443f0",
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff00",
            "z21891de399b4e33a1a93c9a7b8a8fffb5a443ff",
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443f\u{e9}",
        ];
        for sig in cases {
            assert!(!check_signature("test", "1410685589", "test", sig), "{sig:?}");
        }
        assert!(!check_signature("other", "1410685589", "test", good));
        assert!(check_signature("test", "1410685589", "test", &good.to_uppercase()));
    }

    #[test]
    fn secrets_match_only_on_equal_secrets() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret", "s3cre"));
        assert!(!secrets_match("", "s3cret"));
    }
}
