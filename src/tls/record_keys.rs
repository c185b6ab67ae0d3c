//! The key material of our TLS 1.3 record layer (`record.rs`): one direction's key and IV, the
//! per-record nonce, and the key schedule that derives the next keys on a KeyUpdate.
//!
//! [`KeySchedule::Secrets`] holds the two application traffic secrets and steps them as RFC 8446
//! §7.2 says (HKDF-Expand-Label "traffic upd", then "key" and "iv", §7.3): every connection whose
//! secrets the key log caught (`keylog.rs`, checked by [`Secrets::matching`]), and fuzzing and tests
//! without a handshake. Otherwise rustls' key schedule ([`KernelConnection`], handed over after the
//! handshake) derives the next keys.

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Algorithm, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce,
    UnboundKey,
};
use aws_lc_rs::hkdf;
use rustls::ConnectionTrafficSecrets;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use zeroize::Zeroize;

use super::error::RecordError;

/// The AEAD of the negotiated suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static Algorithm {
        match self {
            Cipher::Aes128Gcm => &AES_128_GCM,
            Cipher::Aes256Gcm => &AES_256_GCM,
            Cipher::Chacha20Poly1305 => &CHACHA20_POLY1305,
        }
    }

    /// From a TLS 1.3 cipher suite's IANA code (0x1301, 0x1302, 0x1303).
    pub(super) fn from_suite(suite: u16) -> Option<Cipher> {
        match suite {
            0x1301 => Some(Cipher::Aes128Gcm),
            0x1302 => Some(Cipher::Aes256Gcm),
            0x1303 => Some(Cipher::Chacha20Poly1305),
            _ => None,
        }
    }

    /// The suite's hash, for HKDF: SHA-384 for AES-256-GCM, SHA-256 otherwise.
    fn hkdf(self) -> (hkdf::Algorithm, usize) {
        match self {
            Cipher::Aes256Gcm => (hkdf::HKDF_SHA384, 48),
            _ => (hkdf::HKDF_SHA256, 32),
        }
    }

    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            _ => 32,
        }
    }
}

/// One direction's key material.
pub(super) struct RawKey {
    pub(super) cipher: Cipher,
    key: [u8; 32],
    key_len: u8,
    pub(super) iv: [u8; NONCE_LEN],
}

impl Drop for RawKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl RawKey {
    pub(super) fn from_rustls(secrets: &ConnectionTrafficSecrets) -> Result<RawKey, RecordError> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => return Err(RecordError::Internal),
        };
        RawKey::new(cipher, key.as_ref(), iv.as_ref())
    }

    fn new(cipher: Cipher, key: &[u8], iv: &[u8]) -> Result<RawKey, RecordError> {
        if key.len() > 32 || iv.len() != NONCE_LEN {
            return Err(RecordError::Internal);
        }
        let mut raw = RawKey {
            cipher,
            key: [0; 32],
            key_len: key.len() as u8,
            iv: [0; NONCE_LEN],
        };
        raw.key[..key.len()].copy_from_slice(key);
        raw.iv.copy_from_slice(iv);
        Ok(raw)
    }

    /// The aws-lc context for this key (~600 B of C heap while it lives).
    pub(super) fn context(&self) -> Result<LessSafeKey, RecordError> {
        let key = &self.key[..usize::from(self.key_len)];
        UnboundKey::new(self.cipher.algorithm(), key)
            .map(LessSafeKey::new)
            .map_err(|_| RecordError::Internal)
    }
}

/// The per-record nonce: the IV XOR the sequence number, right-aligned (RFC 8446 §5.3).
pub(super) fn nonce(iv: &[u8; NONCE_LEN], seq: u64) -> Nonce {
    let mut n = *iv;
    for (b, s) in n[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    Nonce::assume_unique_for_key(n)
}

/// Derives the next traffic keys on a KeyUpdate.
pub(super) enum KeySchedule {
    /// rustls' key schedule (a 784 B box), handed over after the handshake: a connection whose
    /// secrets were not caught.
    Rustls(Box<KernelConnection<ServerConnectionData>>),
    /// Traffic secrets held here (104 B): caught during the handshake, or given by fuzzing and
    /// tests ([`super::RecordLayer::with_secrets`]).
    Secrets(Box<Secrets>),
}

/// The client's and the server's current traffic secrets.
pub(super) struct Secrets {
    cipher: Cipher,
    client: [u8; 48],
    server: [u8; 48],
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.client.zeroize();
        self.server.zeroize();
    }
}

impl Secrets {
    /// `client` and `server`: the application traffic secrets, as long as the suite's hash.
    pub(super) fn new(
        cipher: Cipher,
        client: &[u8],
        server: &[u8],
    ) -> Result<Secrets, RecordError> {
        let len = cipher.hkdf().1;
        if client.len() != len || server.len() != len {
            return Err(RecordError::Internal);
        }
        let mut secrets = Secrets {
            cipher,
            client: [0; 48],
            server: [0; 48],
        };
        secrets.client[..len].copy_from_slice(client);
        secrets.server[..len].copy_from_slice(server);
        Ok(secrets)
    }

    /// `client` and `server` as the key schedule of a connection whose current keys are `rx` and
    /// `tx`, if they are the secrets those keys came from: the IVs derived from them (RFC 8446 §7.3)
    /// equal rustls' (a wrong secret matches a 96-bit IV by chance with probability 2^-96). Anything
    /// else, e.g. a KeyUpdate rustls already followed, keeps rustls' key schedule.
    pub(super) fn matching(
        client: &[u8],
        server: &[u8],
        rx: &RawKey,
        tx: &RawKey,
    ) -> Option<Secrets> {
        if rx.cipher != tx.cipher {
            return None;
        }
        let secrets = Secrets::new(rx.cipher, client, server).ok()?;
        let iv = |secret: &[u8; 48]| {
            let (alg, len) = secrets.cipher.hkdf();
            let mut iv = [0; NONCE_LEN];
            expand_label(alg, &secret[..len], b"iv", &mut iv).map(|()| iv)
        };
        let same = iv(&secrets.client).ok()? == rx.iv && iv(&secrets.server).ok()? == tx.iv;
        same.then_some(secrets)
    }

    /// The key and IV of a traffic secret (RFC 8446 §7.3).
    fn key(&self, secret: &[u8; 48]) -> Result<RawKey, RecordError> {
        let (alg, len) = self.cipher.hkdf();
        let (mut key, mut iv) = ([0; 32], [0; NONCE_LEN]);
        let key_len = self.cipher.key_len();
        expand_label(alg, &secret[..len], b"key", &mut key[..key_len])?;
        expand_label(alg, &secret[..len], b"iv", &mut iv)?;
        let raw = RawKey::new(self.cipher, &key[..key_len], &iv);
        key.zeroize();
        raw
    }

    /// The client's (`rx`) or the server's key now.
    pub(super) fn current(&self, rx: bool) -> Result<RawKey, RecordError> {
        self.key(if rx { &self.client } else { &self.server })
    }

    /// application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
    fn step(&mut self, rx: bool) -> Result<RawKey, RecordError> {
        let (alg, len) = self.cipher.hkdf();
        let secret = if rx {
            &mut self.client
        } else {
            &mut self.server
        };
        let mut next = [0; 48];
        expand_label(alg, &secret[..len], b"traffic upd", &mut next[..len])?;
        *secret = next;
        next.zeroize();
        self.current(rx)
    }
}

impl KeySchedule {
    /// The peer's next key (it sent a KeyUpdate), and its first sequence number.
    pub(super) fn next_rx(&mut self) -> Result<(u64, RawKey), RecordError> {
        match self {
            KeySchedule::Rustls(kernel) => {
                let (seq, secrets) = kernel
                    .update_rx_secret()
                    .map_err(|_| RecordError::Internal)?;
                Ok((seq, RawKey::from_rustls(&secrets)?))
            }
            KeySchedule::Secrets(secrets) => Ok((0, secrets.step(true)?)),
        }
    }

    /// Our next key (we sent a KeyUpdate), and its first sequence number.
    pub(super) fn next_tx(&mut self) -> Result<(u64, RawKey), RecordError> {
        match self {
            KeySchedule::Rustls(kernel) => {
                let (seq, secrets) = kernel
                    .update_tx_secret()
                    .map_err(|_| RecordError::Internal)?;
                Ok((seq, RawKey::from_rustls(&secrets)?))
            }
            KeySchedule::Secrets(secrets) => Ok((0, secrets.step(false)?)),
        }
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 §7.1).
fn expand_label(
    alg: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), RecordError> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let length = u16::try_from(out.len())
        .map_err(|_| RecordError::Internal)?
        .to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).map_err(|_| RecordError::Internal)?];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(alg, secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| RecordError::Internal)
}
