//! A simulated exchange for `feed --demo`: N symbols (real PSX tickers first, then `SYM0001`, …) whose
//! prices random-walk, each tick in the seed's shape plus `ts` and `seq`:
//! `{"symbol":"EFERT","open":"50.10","close":"60.10","low":"48.50","high":"48.00","price":"55.00","ts":1712345678901,"seq":17}`.

use crate::ingest::rng::XorShift;

/// Pakistan Stock Exchange tickers, for realistic-looking demos.
pub const PSX_SYMBOLS: &[&str] = &[
    "EFERT", "LUCK", "HASCOL", "OGDC", "PPL", "HBL", "UBL", "ENGRO", "FFC", "PSO", "MCB", "MARI",
    "POL", "HUBC", "KAPCO", "NBP", "BAFL", "MEBL", "SNGP", "SSGC", "TRG", "SYS", "DGKC", "MLCF",
    "FCCL", "PIOC", "KOHC", "CHCC", "ATRL", "NRL", "PRL", "BOP", "AKBL", "BAHL", "FABL", "ABL",
    "HMB", "SEARL", "GLAXO", "ABOT", "INDU", "HCAR", "PSMC", "MTL", "COLG", "NESTLE", "EPCL",
    "LOTCHEM", "ICI", "FATIMA", "DAWH", "ISL", "ASTL", "INIL", "NML", "GATM", "KTML", "ILP",
    "UNITY", "AVN", "NETSOL", "OCTOPUS", "PAEL", "WTL", "KEL", "NCPL", "PKGP", "ENGROH", "FFBL",
    "AGP", "FEROZ", "HINOON", "CPHL", "SHEL", "APL", "BYCO", "CNERGY", "GHGL", "TGL", "PKGS",
    "CEPB", "THALL", "MUGHAL", "AICL", "JSCL", "EFUG", "IGIHL", "DCR", "GHNI", "SAZEW", "ATLH",
    "MEHT", "TOMCL", "SCBPL", "JSBL", "SNBL", "BIPL", "SILK", "FCEPL", "SPEL",
];

/// One simulated stock; prices in paisa (hundredths).
#[derive(Debug, Clone)]
struct Stock {
    symbol: String,
    /// Yesterday's close (the seed's `close`).
    close: u64,
    open: u64,
    low: u64,
    high: u64,
    price: u64,
    seq: u64,
}

/// The simulated market.
#[derive(Debug, Clone)]
pub struct Market {
    stocks: Vec<Stock>,
    rng: XorShift,
}

/// The `n`-th symbol of the demo market.
pub fn symbol_name(n: usize) -> String {
    match PSX_SYMBOLS.get(n) {
        Some(s) => (*s).to_string(),
        None => format!("SYM{:04}", n - PSX_SYMBOLS.len() + 1),
    }
}

impl Market {
    /// `n` stocks, prices between 10.00 and 1000.00, reproducible from `seed`.
    pub fn new(n: usize, seed: u64) -> Market {
        let mut rng = XorShift::new(seed);
        let stocks = (0..n)
            .map(|i| {
                let close = 1_000 + rng.below(99_000);
                // Open within ±1% of yesterday's close.
                let open = step(close, &mut rng, 100);
                Stock {
                    symbol: symbol_name(i),
                    close,
                    open,
                    low: open,
                    high: open,
                    price: open,
                    seq: 0,
                }
            })
            .collect();
        Market { stocks, rng }
    }

    pub fn len(&self) -> usize {
        self.stocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stocks.is_empty()
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.stocks.iter().map(|s| s.symbol.as_str())
    }

    /// Move a random stock by up to ±0.5% and return (symbol, tick JSON) stamped `ts_ms`.
    pub fn tick(&mut self, ts_ms: u64) -> (String, String) {
        let i = self.rng.below(self.stocks.len() as u64) as usize;
        self.tick_of(i, ts_ms)
    }

    /// Move stock `i` and return its tick.
    pub fn tick_of(&mut self, i: usize, ts_ms: u64) -> (String, String) {
        let price = step(self.stocks[i].price, &mut self.rng, 200);
        let s = &mut self.stocks[i];
        s.price = price;
        s.low = s.low.min(price);
        s.high = s.high.max(price);
        s.seq += 1;
        let json = format!(
            r#"{{"symbol":"{}","open":"{}","close":"{}","low":"{}","high":"{}","price":"{}","ts":{ts_ms},"seq":{}}}"#,
            s.symbol,
            money(s.open),
            money(s.close),
            money(s.low),
            money(s.high),
            money(s.price),
            s.seq
        );
        (s.symbol.clone(), json)
    }
}

/// `price` moved by a uniform step of up to ±1/`divisor` of itself (at least one paisa), floored at 0.01.
fn step(price: u64, rng: &mut XorShift, divisor: u64) -> u64 {
    let max = (price / divisor).max(1);
    let delta = rng.below(2 * max + 1);
    (price + delta).saturating_sub(max).max(1)
}

/// 5510 → `55.10`
pub fn money(paisa: u64) -> String {
    format!("{}.{:02}", paisa / 100, paisa % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_message;

    #[test]
    fn names() {
        assert_eq!(symbol_name(0), "EFERT");
        assert_eq!(symbol_name(1), "LUCK");
        assert_eq!(symbol_name(PSX_SYMBOLS.len()), "SYM0001");
        assert_eq!(money(5510), "55.10");
        assert_eq!(money(7), "0.07");
    }

    #[test]
    fn ticks_are_valid_and_sequenced() {
        let mut m = Market::new(3, 42);
        let mut seqs = std::collections::HashMap::new();
        for _ in 0..300 {
            let (symbol, json) = m.tick(1_700_000_000_000);
            let (good, bad) = parse_message(json.as_bytes(), 1024);
            assert!(bad.is_empty(), "{json}");
            assert_eq!(&*good[0].symbol, symbol);
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let seq = v["seq"].as_u64().unwrap();
            let last = seqs.insert(symbol, seq).unwrap_or(0);
            assert_eq!(seq, last + 1);
            let p = |k: &str| v[k].as_str().unwrap().parse::<f64>().unwrap();
            assert!(p("low") <= p("price") && p("price") <= p("high"), "{json}");
        }
        assert_eq!(Market::new(3, 42).tick(1).1, Market::new(3, 42).tick(1).1);
    }
}
