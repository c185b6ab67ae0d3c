//! The two TLS 1.3 application traffic secrets of a handshake, caught as rustls derives them, so the
//! record layer can derive the keys of a KeyUpdate itself (`record_keys::Secrets`, RFC 8446 §7.2)
//! instead of keeping rustls' `KernelConnection` (784 B) for the connection's life.
//!
//! rustls hands secrets out only through a [`KeyLog`] on the shared `ServerConfig`, which does not
//! know the connection. A handshake runs synchronously inside one `process_tls_records` call on the
//! worker's thread, so [`TrafficSecrets`] writes what it is given into a slot of the calling thread,
//! and the connection takes it ([`take`]) right after each call, before any other connection's call
//! can write there. Whatever is taken is checked before use: [`super::RecordLayer::new`] derives the
//! IVs from the caught secrets and compares them with the ones rustls hands over, and keeps rustls'
//! key schedule when they differ.

use std::cell::RefCell;

use rustls::KeyLog;
use zeroize::Zeroize;

const CLIENT_LABEL: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_LABEL: &str = "SERVER_TRAFFIC_SECRET_0";

/// Longest traffic secret: the SHA-384 of TLS13_AES_256_GCM_SHA384.
const MAX_SECRET: usize = 48;

/// The [`KeyLog`] of every server configuration: catches the application traffic secrets only (rustls
/// does not even format the others, [`KeyLog::will_log`]), keeps them on the calling thread, and
/// writes nothing anywhere.
#[derive(Debug)]
pub(super) struct TrafficSecrets;

impl KeyLog for TrafficSecrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        // `try_with`: never a panic inside rustls (a thread being torn down has no slot; its
        // connections then keep rustls' key schedule).
        let _ = SLOT.try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match label {
                CLIENT_LABEL => slot.client.set(secret),
                SERVER_LABEL => slot.server.set(secret),
                _ => {}
            }
        });
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_LABEL || label == SERVER_LABEL
    }
}

/// One traffic secret, or none yet (`len` 0).
struct Secret {
    bytes: [u8; MAX_SECRET],
    len: u8,
}

impl Secret {
    const NONE: Secret = Secret {
        bytes: [0; MAX_SECRET],
        len: 0,
    };

    fn set(&mut self, secret: &[u8]) {
        self.bytes.zeroize();
        self.len = 0;
        if let Some(to) = self.bytes.get_mut(..secret.len()) {
            to.copy_from_slice(secret);
            self.len = secret.len() as u8;
        }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The client's and the server's application traffic secrets of one handshake.
pub(super) struct Caught {
    client: Secret,
    server: Secret,
}

impl Caught {
    pub(super) fn client(&self) -> &[u8] {
        self.client.get()
    }

    pub(super) fn server(&self) -> &[u8] {
        self.server.get()
    }

    fn clear(&mut self) {
        self.client.bytes.zeroize();
        self.server.bytes.zeroize();
        self.client.len = 0;
        self.server.len = 0;
    }
}

impl Drop for Caught {
    fn drop(&mut self) {
        self.clear();
    }
}

thread_local! {
    static SLOT: RefCell<Caught> = const {
        RefCell::new(Caught {
            client: Secret::NONE,
            server: Secret::NONE,
        })
    };
}

/// What the handshake that just ran on this thread logged, once both secrets are there; the slot is
/// left empty either way. Call after every rustls call that can advance a handshake.
pub(super) fn take() -> Option<Box<Caught>> {
    SLOT.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.client.len == 0 && slot.server.len == 0 {
            return None;
        }
        let both = slot.client.len != 0 && slot.server.len != 0;
        let caught = both.then(|| {
            let mut caught = Box::new(Caught {
                client: Secret::NONE,
                server: Secret::NONE,
            });
            caught.client.set(slot.client.get());
            caught.server.set(slot.server.get());
            caught
        });
        slot.clear();
        caught
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_secrets_are_taken_once_and_the_slot_is_emptied() {
        let log = TrafficSecrets;
        assert!(log.will_log(CLIENT_LABEL) && log.will_log(SERVER_LABEL));
        assert!(
            !log.will_log("CLIENT_HANDSHAKE_TRAFFIC_SECRET") && !log.will_log("EXPORTER_SECRET")
        );
        log.log(CLIENT_LABEL, &[0; 32], &[1; 32]);
        log.log(SERVER_LABEL, &[0; 32], &[2; 32]);
        let caught = take().expect("both secrets");
        assert_eq!(
            (caught.client(), caught.server()),
            (&[1; 32][..], &[2; 32][..])
        );
        assert!(take().is_none(), "taken once");
    }

    #[test]
    fn one_secret_alone_is_dropped_not_kept_for_the_next_handshake() {
        let log = TrafficSecrets;
        log.log(SERVER_LABEL, &[0; 32], &[2; 48]);
        assert!(take().is_none());
        log.log(CLIENT_LABEL, &[0; 32], &[1; 48]);
        assert!(take().is_none(), "the earlier server secret was cleared");
    }

    #[test]
    fn a_secret_longer_than_any_suite_hash_is_not_kept() {
        let log = TrafficSecrets;
        log.log(CLIENT_LABEL, &[0; 32], &[1; 64]);
        log.log(SERVER_LABEL, &[0; 32], &[2; 48]);
        assert!(take().is_none());
    }
}
