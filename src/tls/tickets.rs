//! Session-ticket keys from a file (`--tls-ticket-keys`), shared by every process and host that
//! serves the name, so a ticket resumes after a restart and on any member of a fleet.
//!
//! The file is raw bytes: one or more 80-byte keys (`openssl rand 80`), as nginx's
//! `ssl_session_ticket_key`. The first key encrypts new tickets; every key decrypts. Rotation: the
//! operator prepends a new key and drops the oldest (keep two), so tickets of the previous key still
//! resume and tickets two rotations old do not.
//!
//! A key is 16 bytes of name (sent in the clear at the start of every ticket, to find the key) and
//! 64 bytes of secret, from which HKDF-SHA256 derives an AES-256-GCM-SIV key (nonce-misuse
//! resistant: the 96-bit nonces are random and many processes seal with one key). A ticket is
//! `name (16) | issued, Unix seconds, big-endian (8) | nonce (12) | sealed state + tag (16)`, the
//! first 24 bytes authenticated as associated data; a ticket older than [`TICKET_LIFETIME_S`] (or
//! issued more than [`CLOCK_SKEW_S`] in the future: hosts' clocks differ) is refused here, since
//! rustls leaves expiry to the client.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use rustls::server::ProducesTickets;

use super::error::{FileKind, TicketKeysProblem, TlsError};

/// Bytes per key in the file: 16 of name, 64 of secret.
pub const TICKET_KEY_LEN: usize = 80;
/// Most keys one file may hold (one encrypts; a rotation needs two).
pub const MAX_TICKET_KEYS: usize = 16;
/// How long a ticket resumes, told to the client and enforced on decryption: 12 hours. Rotate the
/// file at most this often (keeping two keys) and every ticket lives out its lifetime.
pub const TICKET_LIFETIME_S: u32 = 12 * 60 * 60;
/// How far in the future a ticket's issue time may be (another host's clock running ahead).
pub const CLOCK_SKEW_S: u64 = 300;

const NAME_LEN: usize = 16;
const HEADER_LEN: usize = NAME_LEN + 8;
const TAG_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"ringcast session ticket key v1";

/// The keys of one ticket-key file: encrypts with the first, decrypts with any.
pub struct FileTicketer {
    keys: Vec<TicketKey>,
}

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl FileTicketer {
    /// Reads and checks the file (see [`parse`](Self::parse)).
    pub fn load(path: &Path) -> Result<FileTicketer, TlsError> {
        let bytes = super::load::read_file(FileKind::TicketKeys, path)?;
        FileTicketer::parse(&bytes).map_err(|problem| TlsError::BadTicketKeys {
            path: path.to_owned(),
            problem,
        })
    }

    /// One to [`MAX_TICKET_KEYS`] keys of [`TICKET_KEY_LEN`] bytes, with distinct names.
    pub fn parse(bytes: &[u8]) -> Result<FileTicketer, TicketKeysProblem> {
        if bytes.is_empty() {
            return Err(TicketKeysProblem::Empty);
        }
        if !bytes.len().is_multiple_of(TICKET_KEY_LEN) {
            let text = bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
            return Err(TicketKeysProblem::Length {
                len: bytes.len(),
                looks_like_text: text,
            });
        }
        let count = bytes.len() / TICKET_KEY_LEN;
        if count > MAX_TICKET_KEYS {
            return Err(TicketKeysProblem::TooMany { count });
        }
        let mut keys: Vec<TicketKey> = Vec::with_capacity(count);
        for (i, raw) in bytes.chunks_exact(TICKET_KEY_LEN).enumerate() {
            let name: [u8; NAME_LEN] = raw[..NAME_LEN].try_into().expect("16 bytes");
            if let Some(first) = keys.iter().position(|k| k.name == name) {
                return Err(TicketKeysProblem::DuplicateName {
                    first: first + 1,
                    second: i + 1,
                });
            }
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&raw[NAME_LEN..]);
            let okm = prk
                .expand(&[b"aes-256-gcm-siv"], &AES_256_GCM_SIV)
                .map_err(|_| TicketKeysProblem::Crypto)?;
            let aead = LessSafeKey::new(UnboundKey::from(okm));
            keys.push(TicketKey { name, aead });
        }
        Ok(FileTicketer { keys })
    }

    /// How many keys the file held.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// `encrypt` at a given time (tests).
    fn seal_at(&self, state: &[u8], issued: u64) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + NONCE_LEN + state.len() + TAG_LEN);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&issued.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(state);
        let (header, body) = ticket.split_at_mut(HEADER_LEN);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&*header),
                &mut body[NONCE_LEN..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    /// `decrypt` at a given time (tests).
    fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (header, rest) = ticket.split_at(HEADER_LEN);
        let key = self.keys.iter().find(|k| k.name == header[..NAME_LEN])?;
        let issued = u64::from_be_bytes(header[NAME_LEN..].try_into().ok()?);
        if issued > now + CLOCK_SKEW_S || now.saturating_sub(issued) > u64::from(TICKET_LIFETIME_S)
        {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut state = sealed.to_vec();
        let len = key
            .aead
            .open_in_place(nonce, Aad::from(header), &mut state)
            .ok()?
            .len();
        state.truncate(len);
        Some(state)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_S
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // How many keys, nothing of them (not even the names, which every ticket shows anyway).
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> Vec<u8> {
        (0..TICKET_KEY_LEN as u8)
            .map(|i| i.wrapping_mul(7) ^ seed)
            .collect()
    }

    fn file(seeds: &[u8]) -> FileTicketer {
        FileTicketer::parse(&seeds.iter().flat_map(|&s| key(s)).collect::<Vec<_>>()).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn first_key_encrypts_every_key_decrypts() {
        let old = file(&[1]);
        let rotated = file(&[2, 1]);
        let twice = file(&[3, 2]);
        let ticket = old.seal_at(b"state", NOW).unwrap();
        assert_eq!(
            rotated.open_at(&ticket, NOW).as_deref(),
            Some(&b"state"[..])
        );
        assert_eq!(twice.open_at(&ticket, NOW), None, "two rotations old");
        let new = rotated.seal_at(b"state2", NOW).unwrap();
        assert_eq!(old.open_at(&new, NOW), None, "old file does not know key 2");
        assert_eq!(twice.open_at(&new, NOW).as_deref(), Some(&b"state2"[..]));
    }

    #[test]
    fn tampered_expired_and_future_tickets_are_refused() {
        let t = file(&[1]);
        let ticket = t.seal_at(b"state", NOW).unwrap();
        for i in [0, 17, 30, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(t.open_at(&bad, NOW), None, "byte {i} flipped");
        }
        let life = u64::from(TICKET_LIFETIME_S);
        assert!(t.open_at(&ticket, NOW + life).is_some());
        assert_eq!(t.open_at(&ticket, NOW + life + 1), None);
        assert!(t.open_at(&ticket, NOW - CLOCK_SKEW_S).is_some());
        assert_eq!(t.open_at(&ticket, NOW - CLOCK_SKEW_S - 1), None);
        assert_eq!(t.open_at(&ticket[..20], NOW), None);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(matches!(
            FileTicketer::parse(b""),
            Err(TicketKeysProblem::Empty)
        ));
        assert!(matches!(
            FileTicketer::parse(&[0u8; 48]),
            Err(TicketKeysProblem::Length {
                len: 48,
                looks_like_text: false
            })
        ));
        let hex = "ab".repeat(80) + "\n";
        assert!(matches!(
            FileTicketer::parse(hex.as_bytes()),
            Err(TicketKeysProblem::Length {
                looks_like_text: true,
                ..
            })
        ));
        let many: Vec<u8> = (0..17).flat_map(key).collect();
        assert!(matches!(
            FileTicketer::parse(&many),
            Err(TicketKeysProblem::TooMany { count: 17 })
        ));
        let dup: Vec<u8> = [key(1), key(1)].concat();
        assert!(matches!(
            FileTicketer::parse(&dup),
            Err(TicketKeysProblem::DuplicateName {
                first: 1,
                second: 2
            })
        ));
        assert_eq!(file(&[1, 2, 3]).key_count(), 3);
    }
}
