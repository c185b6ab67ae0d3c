//! The `symbols` claim: which symbols a token lets its holder subscribe to.

/// Patterns from a token's `symbols` claim: exact (`EFERT`), prefix (`PS*`) or everything (`*`).
/// Matching is case-sensitive, like symbols on the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolFilter {
    /// `*` was listed.
    any: bool,
    /// Exact symbols, sorted for binary search.
    exact: Box<[String]>,
    /// Prefixes of `PREFIX*` patterns.
    prefixes: Box<[String]>,
}

impl SymbolFilter {
    /// Build from patterns; an error names the first bad one (a `*` anywhere but at the end, or empty).
    pub fn parse<'p>(patterns: impl IntoIterator<Item = &'p str>) -> Result<Self, String> {
        let mut any = false;
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for pattern in patterns {
            match pattern.strip_suffix('*') {
                Some("") => any = true,
                Some(prefix) if !prefix.contains('*') => prefixes.push(prefix.to_owned()),
                None if !pattern.is_empty() && !pattern.contains('*') => {
                    exact.push(pattern.to_owned())
                }
                _ => return Err(format!("bad symbol pattern `{pattern}`")),
            }
        }
        exact.sort_unstable();
        exact.dedup();
        Ok(SymbolFilter {
            any,
            exact: exact.into(),
            prefixes: prefixes.into(),
        })
    }

    /// May the holder subscribe to `symbol`? (An empty list allows nothing.)
    pub fn allows(&self, symbol: &str) -> bool {
        self.any
            || self
                .exact
                .binary_search_by(|s| s.as_str().cmp(symbol))
                .is_ok()
            || self.prefixes.iter().any(|p| symbol.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_star() {
        let filter = SymbolFilter::parse(["EFERT", "PS*", "LUCK"]).expect("valid patterns");
        assert!(filter.allows("EFERT"));
        assert!(filter.allows("LUCK"));
        assert!(filter.allows("PSO"));
        assert!(filter.allows("PSX100"));
        assert!(!filter.allows("EFER"));
        assert!(!filter.allows("EFERTX"));
        assert!(!filter.allows("efert"));
        assert!(!filter.allows("OGDC"));
        assert!(SymbolFilter::parse(["*"]).expect("star").allows("ANY"));
    }

    #[test]
    fn empty_list_allows_nothing() {
        let none = SymbolFilter::parse([]).expect("empty list");
        assert!(!none.allows("EFERT"));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert_eq!(
            SymbolFilter::parse(["OK", "P*S"]),
            Err("bad symbol pattern `P*S`".into())
        );
        assert!(SymbolFilter::parse(["**"]).is_err());
        assert!(SymbolFilter::parse([""]).is_err());
        assert!(SymbolFilter::parse(["*X"]).is_err());
    }
}
