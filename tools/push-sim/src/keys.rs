//! Key material generated at start: nothing secret is committed, and every run (every test)
//! has keys of its own.

use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::OsRng;

/// A key pair as PEM: the private half in PKCS#8 (what an APNs `.p8` file and a Google
/// service-account JSON hold), the public half as SPKI (what the stand-in verifies with).
#[derive(Clone)]
pub struct PemKeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for PemKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemKeyPair(test-generated)")
    }
}

/// A fresh P-256 key (ES256, APNs token-based auth).
pub fn generate_es256() -> anyhow::Result<PemKeyPair> {
    let secret = p256::SecretKey::random(&mut OsRng);
    Ok(PemKeyPair {
        private_pem: secret.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        public_pem: secret.public_key().to_public_key_pem(LineEnding::LF)?,
    })
}

/// A fresh RSA key (RS256, Google service accounts). 2048 bits as Google issues them.
pub fn generate_rs256() -> anyhow::Result<PemKeyPair> {
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048)?;
    let public = rsa::RsaPublicKey::from(&private);
    Ok(PemKeyPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF)?,
    })
}

/// An RSA test key shared by every process of this machine: RSA key generation takes
/// seconds in a debug build (tens of seconds with parallel tests on two cores), so the
/// first stand-in generates it into the temp directory and the others read it. It is a test
/// key of this machine only, never committed. A file lock keeps concurrent first runs from
/// generating (or reading half-written) keys.
pub fn shared_test_rs256() -> anyhow::Result<PemKeyPair> {
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
    let dir = std::env::temp_dir();
    let path = dir.join("push-sim-test-only-rsa-2048.pem");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("push-sim-test-only-rsa-2048.lock"))?;
    lock.lock()?;
    let private = match std::fs::read_to_string(&path)
        .ok()
        .and_then(|pem| rsa::RsaPrivateKey::from_pkcs8_pem(&pem).ok())
    {
        Some(k) => k,
        None => {
            let k = rsa::RsaPrivateKey::new(&mut OsRng, 2048)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, k.to_pkcs8_pem(LineEnding::LF)?.as_bytes())?;
            std::fs::rename(&tmp, &path)?;
            k
        }
    };
    lock.unlock()?;
    let public = rsa::RsaPublicKey::from(&private);
    Ok(PemKeyPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF)?,
    })
}
