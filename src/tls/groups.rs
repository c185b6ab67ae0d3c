//! The key-exchange groups the server accepts (`--tls-groups`).
//!
//! rustls (server side) takes the first group in the *client's* preference order that is in this
//! list; the list decides what is accepted, and its order matters only for TLS 1.2 clients that send
//! no preference. A client that sent no key share for the chosen group gets a HelloRetryRequest (one
//! more round trip). Post-quantum hybrids are TLS 1.3 only.

use std::fmt;

use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group;

/// Every group `--tls-groups` can name, as `(name, aliases, group)`.
const KNOWN: &[(&str, &[&str], &dyn SupportedKxGroup)] = &[
    ("X25519MLKEM768", &[], kx_group::X25519MLKEM768),
    ("SECP256R1MLKEM768", &[], kx_group::SECP256R1MLKEM768),
    ("x25519", &[], kx_group::X25519),
    (
        "secp256r1",
        &["p256", "p-256", "prime256v1"],
        kx_group::SECP256R1,
    ),
    ("secp384r1", &["p384", "p-384"], kx_group::SECP384R1),
    ("MLKEM768", &[], kx_group::MLKEM768),
];

/// The default: rustls' (aws-lc-rs, `prefer-post-quantum`) list.
pub const DEFAULT_GROUPS: &str = "X25519MLKEM768,x25519,secp256r1,secp384r1";

/// An ordered, non-empty list of key-exchange groups.
#[derive(Clone)]
pub struct KxGroups(Vec<&'static dyn SupportedKxGroup>);

impl KxGroups {
    /// Parses a comma-separated list of names (case-insensitive; `p256`/`P-256` for secp256r1,
    /// `p384` for secp384r1). Duplicates and unknown names are refused.
    pub fn parse(list: &str) -> Result<KxGroups, String> {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in list.split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            let Some(&(_, _, group)) = KNOWN.iter().find(|(n, aliases, _)| {
                n.eq_ignore_ascii_case(name) || aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            }) else {
                return Err(format!(
                    "unknown key-exchange group `{name}` (known: {})",
                    KNOWN.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                ));
            };
            if groups.iter().any(|g| g.name() == group.name()) {
                return Err(format!("key-exchange group `{name}` is listed twice"));
            }
            groups.push(group);
        }
        if groups.is_empty() {
            return Err("no key-exchange group given".into());
        }
        Ok(KxGroups(groups))
    }

    /// The groups, for `CryptoProvider::kx_groups`.
    pub fn to_vec(&self) -> Vec<&'static dyn SupportedKxGroup> {
        self.0.clone()
    }
}

impl Default for KxGroups {
    fn default() -> KxGroups {
        KxGroups::parse(DEFAULT_GROUPS).expect("default groups parse")
    }
}

impl PartialEq for KxGroups {
    fn eq(&self, other: &KxGroups) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.name() == b.name())
    }
}

impl Eq for KxGroups {}

impl fmt::Debug for KxGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|g| g.name()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    #[test]
    fn names_and_aliases() {
        let g = KxGroups::parse("x25519, P-256 ,X25519MLKEM768").unwrap();
        let names: Vec<_> = g.to_vec().iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::X25519MLKEM768
            ]
        );
        assert!(KxGroups::parse("x448").unwrap_err().contains("x448"));
        assert!(
            KxGroups::parse("x25519,X25519")
                .unwrap_err()
                .contains("twice")
        );
        assert!(KxGroups::parse(" , ").is_err());
    }

    #[test]
    fn default_is_rustls_default() {
        let ours: Vec<_> = KxGroups::default()
            .to_vec()
            .iter()
            .map(|g| g.name())
            .collect();
        let rustls: Vec<_> = rustls::crypto::aws_lc_rs::default_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(ours, rustls);
    }
}
