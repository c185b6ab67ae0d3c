//! What src/ does, read from its text for tests/docs_consistent.rs: the close codes and reasons it sends,
//! the protocol and auth errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ringcast::auth::AuthError;
use ringcast::protocol::{CloseCode, ProtocolError};

use super::{ROOT, between, idents_after, read};

/// Every .rs file under src/, without its unit tests (`tests/` directories, `tests.rs`, and everything
/// after `#[cfg(test)]`): the code the server runs.
pub fn server_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap().to_string();
                out.push((path, code));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(ROOT).join("src"), &mut out);
    out
}

/// The close codes src/ uses: every `CloseCode::NAME` (resolved through the constants of
/// src/protocol/close.rs) and `CloseCode(N)` outside close.rs.
pub fn close_codes_used() -> BTreeSet<u16> {
    let mut used = BTreeSet::new();
    for (path, code) in server_sources() {
        if path.ends_with("protocol/close.rs") {
            continue;
        }
        for name in idents_after(&code, "CloseCode::") {
            let value = close_constant(name).unwrap_or_else(|| {
                panic!("{}: CloseCode::{name} is not in close.rs", path.display())
            });
            used.insert(value.0);
        }
        for literal in between(&code, "CloseCode(", ')') {
            if let Ok(value) = literal.parse::<u16>() {
                used.insert(value);
            }
        }
    }
    used
}

/// `CloseCode::NAME` → its value (the constants of src/protocol/close.rs).
pub fn close_constant(name: &str) -> Option<CloseCode> {
    let close_rs = read("src/protocol/close.rs");
    close_rs.lines().find_map(|l| {
        let l = l.trim().strip_prefix("pub const ")?;
        let (n, rest) = l.split_once(": CloseCode = CloseCode(")?;
        let value = rest.split(')').next()?.parse().ok()?;
        (n == name).then_some(CloseCode(value))
    })
}

/// Every `ProtocolError`, each with its close code and reason as sent.
pub fn protocol_errors() -> Vec<(u16, String)> {
    use ProtocolError::*;
    let all = [
        UnmaskedFrame,
        ReservedBitsSet,
        ReservedOpcode(3),
        ControlFrameTooLong,
        FragmentedControlFrame,
        UnexpectedContinuation,
        ExpectedContinuation,
        NonMinimalLength,
        LengthMsbSet,
        InvalidClosePayload,
        InvalidCloseCode(5),
        InvalidUtf8,
        FrameTooBig,
        MessageTooBig,
        TooManyFragments,
    ];
    for e in all {
        // A new variant stops this from compiling: add it to `all` above too.
        match e {
            UnmaskedFrame
            | ReservedBitsSet
            | ReservedOpcode(_)
            | ControlFrameTooLong
            | FragmentedControlFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | NonMinimalLength
            | LengthMsbSet
            | InvalidClosePayload
            | InvalidCloseCode(_)
            | InvalidUtf8
            | FrameTooBig
            | MessageTooBig
            | TooManyFragments => {}
        }
    }
    all.iter()
        .map(|e| (e.close_code().0, e.reason().to_string()))
        .collect()
}

/// Every `AuthError` an upgrade can be refused with (`--auth-refusal close`). `WrongSubject` comes only
/// from a refresh on an open socket, answered with an `auth_failed` message, never with a close.
pub fn upgrade_auth_errors() -> Vec<AuthError> {
    use AuthError::*;
    let all = [
        Missing,
        Malformed("<detail>"),
        BadSignature,
        Expired { exp: 1 },
        NotYetValid,
        WrongAudience,
        UnsupportedAlg,
    ];
    for e in all.iter().copied().chain([WrongSubject]) {
        // A new variant stops this from compiling: add it to `all` above (or beside WrongSubject).
        match e {
            Missing
            | Malformed(_)
            | BadSignature
            | Expired { .. }
            | NotYetValid
            | WrongAudience
            | UnsupportedAlg
            | WrongSubject => {}
        }
    }
    all.to_vec()
}

/// Close code → the reasons src/ sends with it: the protocol errors, the refused tokens, the client's
/// own close echoed (1000, no reason), and every close src/ makes with a code and a reason side by side
/// (`CloseCode::NAME, "reason"`, or `auth::CLOSE_TOKEN_EXPIRED, auth::CLOSE_TOKEN_EXPIRED_REASON`).
pub fn close_reasons_sent() -> BTreeMap<u16, BTreeSet<String>> {
    let mut sent: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let mut add = |code: u16, reason: String| {
        sent.entry(code).or_default().insert(reason);
    };
    add(CloseCode::NORMAL.0, String::new());
    for (code, reason) in protocol_errors() {
        add(code, reason);
    }
    for e in upgrade_auth_errors() {
        add(e.close_code().0, e.description());
    }
    let mut pairs = 0;
    for (path, code) in server_sources() {
        if path.ends_with("protocol/close.rs") {
            continue; // CloseCode::SENT: codes and meanings, not reasons
        }
        for (i, _) in code.match_indices(',') {
            let before = &code[..i];
            let start = before
                .char_indices()
                .rev()
                .find(|&(_, c)| !c.is_ascii_alphanumeric() && c != '_' && c != ':')
                .map_or(0, |(j, c)| j + c.len_utf8());
            let close = match &before[start..] {
                e if e.starts_with("CloseCode::") => close_constant(&e["CloseCode::".len()..]),
                e if e.ends_with("CLOSE_TOKEN_EXPIRED") => {
                    Some(ringcast::auth::CLOSE_TOKEN_EXPIRED)
                }
                e if e.ends_with("CLOSE_TOKEN_REFUSED") => {
                    Some(ringcast::auth::CLOSE_TOKEN_REFUSED)
                }
                _ => None,
            };
            let Some(close) = close else { continue };
            let after = code[i + 1..].trim_start();
            let next = &after[..after
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != ':')
                .unwrap_or(after.len())];
            let reason = if let Some(rest) = after.strip_prefix('"') {
                rest[..rest.find('"').unwrap()].to_string()
            } else if next.ends_with("CLOSE_TOKEN_EXPIRED_REASON") {
                ringcast::auth::CLOSE_TOKEN_EXPIRED_REASON.to_string()
            } else if next.ends_with("_REASON") {
                panic!(
                    "{}: a close with {close:?} and reason {next}: teach this test to read it",
                    path.display()
                );
            } else {
                continue; // a code not followed by a reason (a match arm, a list)
            };
            add(close.0, reason);
            pairs += 1;
        }
    }
    assert!(
        pairs >= 3,
        "closes with a code and a reason found in src/: {pairs}"
    );
    sent
}

/// The reasons of a table cell: each `quoted` text, `<…>` standing for a value filled in (an `exp`, a
/// detail); nothing quoted = the empty reason.
pub fn reason_patterns(cell: &str) -> Vec<String> {
    let quoted: Vec<String> = cell
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    if quoted.is_empty() {
        vec![String::new()]
    } else {
        quoted
    }
}

pub fn reason_matches(pattern: &str, reason: &str) -> bool {
    match pattern.split_once('<') {
        Some((prefix, rest)) => {
            let suffix = rest.split_once('>').map_or("", |(_, s)| s);
            reason.len() > prefix.len() + suffix.len()
                && reason.starts_with(prefix)
                && reason.ends_with(suffix)
        }
        None => pattern == reason,
    }
}
