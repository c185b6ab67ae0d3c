use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::{KeyInit, Mac};
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OLD_SECRET: &[u8] = b"an older secret, still accepted!";
const NOW: u64 = 1_700_000_000;

fn validation(secrets: &[Vec<u8>]) -> Validation<'_> {
    Validation {
        secrets,
        audience: None,
        leeway_s: 30,
    }
}

fn secrets() -> Vec<Vec<u8>> {
    vec![SECRET.to_vec()]
}

fn check(token: &str) -> Result<Claims, AuthError> {
    verify(token, &validation(&secrets()), NOW)
}

/// A token with an arbitrary header, correctly signed with `SECRET`.
fn with_header(header: &str, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        BASE64URL.encode(header),
        BASE64URL.encode(claims.to_string())
    );
    let mut mac = HmacSha256::new_from_slice(SECRET).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", BASE64URL.encode(mac.finalize().into_bytes()))
}

#[test]
fn round_trip() {
    let token = sign_hs256(&json!({"sub": "alice", "exp": NOW + 60}), SECRET);
    assert_eq!(
        check(&token),
        Ok(Claims {
            sub: "alice".into(),
            exp: NOW + 60,
            nbf: None,
            symbols: None,
        })
    );
}

#[test]
fn interoperates_with_the_rfc_style_example_token() {
    // The well-known jwt.io example (secret `your-256-bit-secret`): it has no `exp`, so getting past
    // the signature to the claims proves our HMAC and base64url match other implementations.
    let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                 eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                 SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let good = vec![b"your-256-bit-secret".to_vec()];
    assert_eq!(
        verify(token, &validation(&good), NOW),
        Err(AuthError::Malformed("`exp` must be a number of seconds"))
    );
    assert_eq!(check(token), Err(AuthError::BadSignature));
}

#[test]
fn any_configured_secret_verifies_for_rotation() {
    let token = sign_hs256(&json!({"sub": "bob", "exp": NOW + 60}), OLD_SECRET);
    let both = vec![SECRET.to_vec(), OLD_SECRET.to_vec()];
    assert!(verify(&token, &validation(&both), NOW).is_ok());
    assert_eq!(check(&token), Err(AuthError::BadSignature));
    assert_eq!(
        verify(&token, &validation(&[]), NOW),
        Err(AuthError::BadSignature)
    );
    let empty_key = sign_hs256(&json!({"sub": "eve", "exp": NOW + 60}), b"");
    let empty = vec![Vec::new()];
    assert_eq!(
        verify(&empty_key, &validation(&empty), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn tampering_breaks_the_signature() {
    let token = sign_hs256(&json!({"sub": "alice", "exp": NOW + 60}), SECRET);
    let (signing_input, _) = token.rsplit_once('.').expect("three parts");
    let (header, _) = signing_input.split_once('.').expect("three parts");
    let forged_payload = BASE64URL.encode(json!({"sub": "root", "exp": NOW + 60}).to_string());
    let signature = token.rsplit('.').next().expect("signature");
    let forged = format!("{header}.{forged_payload}.{signature}");
    assert_eq!(check(&forged), Err(AuthError::BadSignature));

    let truncated = &token[..token.len() - 2];
    assert!(matches!(
        check(truncated),
        Err(AuthError::BadSignature | AuthError::Malformed(_))
    ));
    let mut flipped = token.into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ASCII");
    assert_eq!(check(&flipped), Err(AuthError::BadSignature));
}

#[test]
fn payload_is_not_parsed_before_the_signature_verifies() {
    let header = BASE64URL.encode(r#"{"alg":"HS256"}"#);
    let garbage = BASE64URL.encode("not json");
    let token = format!("{header}.{garbage}.{}", BASE64URL.encode([0u8; 32]));
    assert_eq!(check(&token), Err(AuthError::BadSignature));
}

#[test]
fn only_hs256_is_accepted() {
    let claims = json!({"sub": "alice", "exp": NOW + 60});
    let unsigned = format!(
        "{}.{}.",
        BASE64URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
        BASE64URL.encode(claims.to_string())
    );
    assert_eq!(check(&unsigned), Err(AuthError::UnsupportedAlg));
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"HS512"}"#,
        r#"{"alg":"RS256"}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"typ":"JWT"}"#,
        r#"{"alg":"HS256","crit":["exp"]}"#,
    ] {
        assert_eq!(
            check(&with_header(header, &claims)),
            Err(AuthError::UnsupportedAlg),
            "{header}"
        );
    }
    assert!(check(&with_header(r#"{"alg":"HS256"}"#, &claims)).is_ok());
}

#[test]
fn malformed_shapes() {
    assert_eq!(check(""), Err(AuthError::Missing));
    let hs256 = BASE64URL.encode(r#"{"alg":"HS256"}"#);
    let bad_signature = format!("{hs256}.e30.***");
    for token in ["abc", "a.b", "a.b.c.d", "..", "!!.e30.AA", &bad_signature] {
        assert!(
            matches!(check(token), Err(AuthError::Malformed(_))),
            "{token}"
        );
    }
    let header_not_object = format!("{}.e30.AA", BASE64URL.encode("[1]"));
    assert!(matches!(
        check(&header_not_object),
        Err(AuthError::Malformed(_))
    ));
    let token = sign_hs256(&json!({"sub": "alice", "exp": NOW + 60}), SECRET);
    assert!(matches!(
        check(&format!("{token}=")),
        Err(AuthError::Malformed(_))
    ));
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(check(&huge), Err(AuthError::Malformed("token too long")));
}

#[test]
fn required_and_typed_claims() {
    let bad = [
        json!({"exp": NOW + 60}),
        json!({"sub": "", "exp": NOW + 60}),
        json!({"sub": 42, "exp": NOW + 60}),
        json!({"sub": "alice"}),
        json!({"sub": "alice", "exp": "tomorrow"}),
        json!({"sub": "alice", "exp": -5}),
        json!({"sub": "alice", "exp": NOW + 60, "nbf": "now"}),
        json!({"sub": "alice", "exp": NOW + 60, "symbols": "EFERT"}),
        json!({"sub": "alice", "exp": NOW + 60, "symbols": [1]}),
        json!({"sub": "alice", "exp": NOW + 60, "symbols": ["A*B"]}),
        json!([1, 2]),
    ];
    for claims in bad {
        assert!(
            matches!(
                check(&sign_hs256(&claims, SECRET)),
                Err(AuthError::Malformed(_))
            ),
            "{claims}"
        );
    }
    let fractional = sign_hs256(&json!({"sub": "alice", "exp": NOW as f64 + 60.7}), SECRET);
    assert_eq!(check(&fractional).map(|c| c.exp), Ok(NOW + 60));
}

#[test]
fn symbols_claim_becomes_a_filter() {
    let token = sign_hs256(
        &json!({"sub": "alice", "exp": NOW + 60, "symbols": ["EFERT", "PS*"]}),
        SECRET,
    );
    let filter = check(&token)
        .expect("valid token")
        .symbols
        .expect("symbols claim");
    assert!(filter.allows("EFERT") && filter.allows("PSO") && !filter.allows("LUCK"));
}

#[test]
fn expiry_with_leeway() {
    let exp = NOW;
    let token = sign_hs256(&json!({"sub": "alice", "exp": exp}), SECRET);
    let v = validation(&[]);
    let secrets = secrets();
    let v = Validation {
        secrets: &secrets,
        ..v
    };
    assert!(verify(&token, &v, exp - 1).is_ok());
    assert!(verify(&token, &v, exp + 29).is_ok());
    assert_eq!(
        verify(&token, &v, exp + 30),
        Err(AuthError::Expired { exp })
    );
    let strict = Validation { leeway_s: 0, ..v };
    assert_eq!(
        verify(&token, &strict, exp),
        Err(AuthError::Expired { exp })
    );
    let far = sign_hs256(&json!({"sub": "alice", "exp": u64::MAX}), SECRET);
    assert!(verify(&far, &v, NOW).is_ok());
}

#[test]
fn not_before_with_leeway() {
    let nbf = NOW + 100;
    let token = sign_hs256(
        &json!({"sub": "alice", "exp": NOW + 600, "nbf": nbf}),
        SECRET,
    );
    let secrets = secrets();
    let v = validation(&secrets);
    assert_eq!(verify(&token, &v, nbf - 31), Err(AuthError::NotYetValid));
    assert!(verify(&token, &v, nbf - 30).is_ok());
    assert!(verify(&token, &v, nbf).is_ok());
}

#[test]
fn audience_checked_only_when_configured() {
    let secrets = secrets();
    let with_aud = Validation {
        audience: Some("ringcast"),
        ..validation(&secrets)
    };
    let token = |aud: Value| sign_hs256(&json!({"sub": "a", "exp": NOW + 60, "aud": aud}), SECRET);
    assert!(verify(&token(json!("ringcast")), &with_aud, NOW).is_ok());
    assert!(verify(&token(json!(["other", "ringcast"])), &with_aud, NOW).is_ok());
    assert_eq!(
        verify(&token(json!("other")), &with_aud, NOW),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        verify(&token(json!(7)), &with_aud, NOW),
        Err(AuthError::WrongAudience)
    );
    let no_aud = sign_hs256(&json!({"sub": "a", "exp": NOW + 60}), SECRET);
    assert_eq!(
        verify(&no_aud, &with_aud, NOW),
        Err(AuthError::WrongAudience)
    );
    assert!(verify(&token(json!("other")), &validation(&secrets), NOW).is_ok());
}

#[test]
fn repeated_keys_are_refused_in_header_and_payload() {
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let claims = format!(r#"{{"sub":"alice","exp":{}}}"#, NOW + 60);
    assert!(check(&sign_hs256_raw(header, &claims, SECRET)).is_ok());
    // The last `sub` would win in serde_json; another reader may take the first.
    let two_subs = format!(r#"{{"sub":"alice","exp":{},"sub":"admin"}}"#, NOW + 60);
    assert_eq!(
        check(&sign_hs256_raw(header, &two_subs, SECRET)),
        Err(AuthError::Malformed("duplicate key in the payload"))
    );
    let two_exps = format!(r#"{{"sub":"alice","exp":{},"exp":{}}}"#, NOW - 60, NOW + 60);
    assert_eq!(
        check(&sign_hs256_raw(header, &two_exps, SECRET)),
        Err(AuthError::Malformed("duplicate key in the payload"))
    );
    let two_algs = r#"{"alg":"none","alg":"HS256"}"#;
    assert_eq!(
        check(&sign_hs256_raw(two_algs, &claims, SECRET)),
        Err(AuthError::Malformed("duplicate key in the header"))
    );
    // Equal keys inside a nested value are that value's business, not a claim's.
    let nested = format!(
        r#"{{"sub":"alice","exp":{},"x":{{"a":1}},"y":[{{"a":1}}]}}"#,
        NOW + 60
    );
    assert!(check(&sign_hs256_raw(header, &nested, SECRET)).is_ok());
}

#[test]
fn far_future_and_huge_times_do_not_overflow() {
    let token = sign_hs256(&json!({"sub": "a", "exp": u64::MAX}), SECRET);
    assert_eq!(check(&token).map(|c| c.exp), Ok(u64::MAX));
    let token = sign_hs256(&json!({"sub": "a", "exp": 1e300}), SECRET);
    assert_eq!(check(&token).map(|c| c.exp), Ok(u64::MAX), "saturates");
    let token = sign_hs256(
        &json!({"sub": "a", "exp": NOW + 60, "nbf": u64::MAX}),
        SECRET,
    );
    assert_eq!(check(&token), Err(AuthError::NotYetValid));
    let token = sign_hs256(&json!({"sub": "a", "exp": -1}), SECRET);
    assert!(matches!(check(&token), Err(AuthError::Malformed(_))));
}
