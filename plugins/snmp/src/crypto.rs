//! The cryptography of SNMP v3's User-based Security Model: password to key
//! and key localization (RFC 3414 A.2), truncated HMAC digests (HMAC-SHA-96,
//! RFC 3414; HMAC-192-SHA-256, RFC 7860) and AES-128-CFB (RFC 3826).

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The authentication protocols offered (MD5 and DES are not: broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol: HMAC-SHA-1, 12-byte digest.
    Sha1,
    /// usmHMAC192SHA256AuthProtocol: HMAC-SHA-256, 24-byte digest.
    Sha256,
}

impl AuthProtocol {
    /// Bytes of the digest carried in msgAuthenticationParameters.
    pub fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha256 => 24,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            AuthProtocol::Sha1 => Sha1::digest(data).to_vec(),
            AuthProtocol::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// RFC 3414 A.2: the digest of 1 MiB of the password repeated.
    pub fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        const TOTAL: usize = 1 << 20;
        let stream: Vec<u8> = password.iter().copied().cycle().take(TOTAL).collect();
        self.hash(&stream)
    }

    /// RFC 3414 A.2: the key localized to one engine, H(Ku | engineID | Ku).
    pub fn localize(self, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(ku.len() * 2 + engine_id.len());
        data.extend_from_slice(ku);
        data.extend_from_slice(engine_id);
        data.extend_from_slice(ku);
        self.hash(&data)
    }

    /// The truncated HMAC of `message` under `key`.
    pub fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let full = match self {
            AuthProtocol::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
            AuthProtocol::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
        };
        full[..self.mac_len()].to_vec()
    }
}

/// AES-128-CFB (RFC 3826): IV = boots | time | salt (8 bytes).
pub fn aes_cfb(
    key: &[u8; 16], boots: u32, time: u32, salt: &[u8], mut data: Vec<u8>, encrypt: bool,
) -> Vec<u8> {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    let n = salt.len().min(8);
    iv[8..8 + n].copy_from_slice(&salt[..n]);
    if encrypt {
        cfb_mode::Encryptor::<aes::Aes128>::new(key.into(), &iv.into()).encrypt(&mut data);
    } else {
        cfb_mode::Decryptor::<aes::Aes128>::new(key.into(), &iv.into()).decrypt(&mut data);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn sha1_keys_match_rfc_3414_appendix_a3() {
        // RFC 3414 A.3.2: password "maplesyrup", engine ID 00...02.
        let ku = AuthProtocol::Sha1.password_to_key(b"maplesyrup");
        assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
        let kul = AuthProtocol::Sha1.localize(&ku, &hex("000000000000000000000002"));
        assert_eq!(kul, hex("6695febc9288e36282235fc7151f128497b38f3f"));
    }

    #[test]
    fn aes_cfb_round_trips_and_depends_on_the_iv() {
        let key = [7u8; 16];
        let plain = b"a scoped PDU of any length, no padding".to_vec();
        let ct = aes_cfb(&key, 1, 2, &[3; 8], plain.clone(), true);
        assert_eq!(ct.len(), plain.len());
        assert_ne!(ct, plain);
        assert_eq!(aes_cfb(&key, 1, 2, &[3; 8], ct.clone(), false), plain);
        assert_ne!(aes_cfb(&key, 1, 3, &[3; 8], ct, false), plain);
    }
}
