//! Password hashes in the SHA512-CRYPT scheme (`$6$salt$hash`, Drepper's
//! SHA-crypt), stored as `{SHA512-CRYPT}$6$...`, which Dovecot verifies
//! natively (`doveadm pw -t`) and glibc's crypt(3) understands.

use sha_crypt::{Sha512Params, sha512_crypt_b64};

/// The scheme prefix Dovecot reads in a passwd-file.
pub const SCHEME: &str = "{SHA512-CRYPT}";

/// Salt length: the most SHA-crypt uses (16 characters, 96 bits).
const SALT_LEN: usize = 16;

/// crypt(3)'s salt alphabet.
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A salt from 16 random bytes (each maps to one of 64 characters: 256 is a
/// multiple of 64, so the choice is uniform).
pub fn salt_from(random: &[u8; SALT_LEN]) -> String {
    random.iter().map(|b| ALPHABET[usize::from(*b) % 64] as char).collect()
}

/// `$6$<salt>$<hash>` with the default 5000 rounds (what doveadm writes).
pub fn sha512_crypt(password: &str, salt: &str) -> String {
    let params = Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("default rounds are valid");
    let hash = sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .expect("SHA512-CRYPT of a valid salt");
    format!("$6${salt}${hash}")
}

/// The stored form of `password` with a fresh random salt: `{SHA512-CRYPT}$6$...`.
pub fn store(password: &str) -> String {
    let bytes = wasip2::random::random::get_random_bytes(SALT_LEN as u64);
    let random: [u8; SALT_LEN] = bytes.try_into().expect("the host returns the bytes asked");
    format!("{SCHEME}{}", sha512_crypt(password, &salt_from(&random)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_sha_crypt_reference_vector() {
        // From Drepper's SHA-crypt specification (the test vectors section).
        assert_eq!(
            sha512_crypt("Hello world!", "saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn salts_use_the_crypt_alphabet() {
        let salt = salt_from(&[0, 63, 64, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(salt.len(), 16);
        assert!(salt.starts_with(".z.z/01"), "{salt}");
        assert!(salt.bytes().all(|c| ALPHABET.contains(&c)));
    }
}
