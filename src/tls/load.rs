//! Reading the PEM certificate chain and private key into a checked [`CertifiedKey`].
//!
//! Every failure names the file and what is wrong with it (see [`TlsError`]). The key is checked
//! against the leaf certificate here, at load time, so a mismatched pair is refused by `reload`
//! instead of failing every handshake afterwards.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::error::{FileKind, TlsError};

/// Reads a whole file, mapping "not found" and other I/O errors to actionable [`TlsError`]s.
pub(super) fn read_file(kind: FileKind, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::MissingFile {
            kind,
            path: path.to_owned(),
        },
        _ => TlsError::Unreadable {
            kind,
            path: path.to_owned(),
            source,
        },
    })
}

/// Parses every `CERTIFICATE` block of `pem_bytes` (other blocks are ignored), leaf first.
pub(super) fn parse_chain(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(FileKind::Cert, path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
            looks_like_key: PrivateKeyDer::from_pem_slice(pem_bytes).is_ok(),
        });
    }
    Ok(chain)
}

/// Parses the first private key block (PKCS#8, PKCS#1 RSA or SEC1 EC) of `pem_bytes`.
pub(super) fn parse_key(path: &Path, pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
            encrypted: contains(pem_bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
                || contains(pem_bytes, b"Proc-Type: 4,ENCRYPTED"),
            looks_like_cert: contains(pem_bytes, b"-----BEGIN CERTIFICATE-----"),
        }),
        Err(e) => Err(bad_pem(FileKind::Key, path, e)),
    }
}

/// Loads both files and checks that the key signs for the leaf certificate.
pub(super) fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_chain(cert_path, &read_file(FileKind::Cert, cert_path)?)?;
    let key = parse_key(key_path, &read_file(FileKind::Key, key_path)?)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // rustls cannot tell for this key type: accept, as `with_single_cert` does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// Wraps a loaded key for [`rustls::ConfigBuilder::with_cert_resolver`].
pub(super) fn resolver(key: CertifiedKey) -> Arc<rustls::sign::SingleCertAndKey> {
    Arc::new(rustls::sign::SingleCertAndKey::from(key))
}

fn bad_pem(kind: FileKind, path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Unreadable {
            kind,
            path: path.to_owned(),
            source,
        },
        pem::Error::MissingSectionEnd { end_marker } => TlsError::BadPem {
            kind,
            path: path.to_owned(),
            detail: format!("no \"{}\" line", String::from_utf8_lossy(&end_marker)),
        },
        pem::Error::IllegalSectionStart { line } => TlsError::BadPem {
            kind,
            path: path.to_owned(),
            detail: format!("malformed line \"{}\"", String::from_utf8_lossy(&line)),
        },
        e => TlsError::BadPem {
            kind,
            path: path.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_HEADER: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn empty_cert_file_is_no_certificate() {
        let err = parse_chain(Path::new("/x/cert.pem"), b"").unwrap_err();
        assert!(matches!(
            err,
            TlsError::NoCertificate {
                looks_like_key: false,
                ..
            }
        ));
        assert!(err.to_string().contains("/x/cert.pem"), "{err}");
    }

    #[test]
    fn certificate_in_key_file_hints_at_swapped_flags() {
        let err = parse_key(Path::new("/x/key.pem"), CERT_HEADER).unwrap_err();
        assert!(matches!(
            err,
            TlsError::NoKey {
                looks_like_cert: true,
                ..
            }
        ));
        assert!(err.to_string().contains("swapped"), "{err}");
    }

    #[test]
    fn encrypted_key_is_named() {
        let pem =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = parse_key(Path::new("/x/key.pem"), pem).unwrap_err();
        assert!(err.to_string().contains("passphrase"), "{err}");
    }

    #[test]
    fn truncated_pem_is_bad_pem() {
        let err = parse_chain(
            Path::new("/x/c.pem"),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err =
            read_file(FileKind::Cert, Path::new("/nonexistent/ringcast/cert.pem")).unwrap_err();
        assert!(matches!(err, TlsError::MissingFile { .. }));
        assert!(err.to_string().contains("/nonexistent/ringcast/cert.pem"));
    }
}
