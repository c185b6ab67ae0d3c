//! The value parsers of the command line: each error names what a good value looks like (clap adds
//! the flag and the value given).

use crate::common::{parse_cores, parse_secs};

/// A core list (`1`, `0,2-3`).
#[derive(Debug, Clone)]
pub struct CoreList(pub Vec<usize>);
/// Ticks/s per fanout step.
#[derive(Debug, Clone)]
pub struct RateList(pub Vec<f64>);
/// Server pids.
#[derive(Debug, Clone)]
pub struct PidList(pub Vec<i32>);

/// Milliseconds > 0 (`100`, `2.5`).
pub(super) fn positive_ms(v: &str) -> Result<f64, String> {
    match v.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err("not a number of milliseconds > 0: give one such as 100".into()),
    }
}

/// A whole number ≥ 0; `_` separators allowed (`10_000`).
pub(super) fn count<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim().replace('_', "").parse().map_err(|_| {
        if v.trim_start().starts_with('-') {
            "must not be negative: give a whole number ≥ 0, such as 10000 or 10_000".to_string()
        } else {
            "not a whole number: give one such as 10000 or 10_000".to_string()
        }
    })
}

pub(super) fn positive<T: std::str::FromStr + Default + PartialEq>(v: &str) -> Result<T, String> {
    let n: T = count(v)?;
    if n == T::default() {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

pub(super) fn conns(v: &str) -> Result<u64, String> {
    let n: u64 = count(v)?;
    if n > 1_000_000 {
        return Err("at most 1,000,000 (the harness's limit)".into());
    }
    Ok(n)
}

pub(super) fn masters(v: &str) -> Result<u32, String> {
    match count::<u32>(v)? {
        n if n <= 16 => Ok(n),
        _ => Err("must be 0..=16 (0: one plain Redis; 1 or 3 as measured)".into()),
    }
}

pub(super) fn per_client(v: &str) -> Result<u64, String> {
    let max = crate::coord::MAX_PER_PROCESS;
    match count::<u64>(v)? {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be 1..={max} (the descriptor limit of one process)"
        )),
    }
}

/// A number ≥ 0 (`0.5`, `1000`, `10_000`).
pub(super) fn non_negative(v: &str) -> Result<f64, String> {
    match v.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err("must be a number ≥ 0, such as 0.5 or 1000".into()),
        Err(_) => Err("not a number: give one such as 0.5 or 1000".into()),
    }
}

pub(super) fn fraction(v: &str) -> Result<f64, String> {
    match non_negative(v) {
        Ok(x) if x <= 1.0 => Ok(x),
        _ => Err("must be a fraction from 0 to 1, such as 0.2".into()),
    }
}

/// Seconds: `10`, `10s`, `500ms`, `2m`, `1h`.
pub(super) fn duration(v: &str) -> Result<f64, String> {
    match parse_secs(v) {
        Some(s) if s >= 0.0 && s.is_finite() => Ok(s),
        _ => Err("not a duration: give one such as 10 (seconds), 10s, 500ms, 2m or 1h".into()),
    }
}

pub(super) fn ipv4_port(v: &str) -> Result<std::net::SocketAddrV4, String> {
    v.parse()
        .map_err(|_| "not an IPv4 address and port: give one such as 127.0.0.1:3001".into())
}

pub(super) fn core_list(v: &str) -> Result<CoreList, String> {
    parse_cores(v)
        .map(CoreList)
        .map_err(|_| "not a core list: give one such as 1, 0,2 or 0-3".into())
}

/// A core list kept as written (it is also shown in the summary).
pub(super) fn core_list_text(v: &str) -> Result<String, String> {
    core_list(v).map(|_| v.to_string())
}

pub(super) fn rate_list(v: &str) -> Result<RateList, String> {
    let steps = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(non_negative)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a list of rates: give ticks/s per step, such as 100,1000,10_000")?;
    if steps.is_empty() {
        return Err("needs at least one rate, such as 100,1000,10000".into());
    }
    Ok(RateList(steps))
}

pub(super) fn pid_list(v: &str) -> Result<PidList, String> {
    v.split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|&p| p > 0))
        .collect::<Option<Vec<_>>>()
        .map(PidList)
        .ok_or_else(|| "not a pid list: give one such as 1234 or 1234,1235".into())
}
