//! Incremental UTF-8 validation, so invalid text fails as early as it is detectable, even when a code
//! point is split across frames or reads.
//!
//! Between chunks only the unfinished code point matters: how many continuation bytes it still needs
//! and the range allowed for the next one. The first continuation byte's range depends on the lead
//! byte (Unicode Table 3-7), which is what rules out overlong forms, surrogates (U+D800–U+DFFF) and
//! code points above U+10FFFF. Whole chunks are checked with `std::str::from_utf8`, which is fast.

/// Validator state carried between chunks. Small (a few bytes) because it lives in every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still needed by the current code point; `FAILED` once invalid.
    need: u8,
    /// Inclusive range allowed for the next continuation byte.
    lo: u8,
    hi: u8,
}

const FAILED: u8 = u8::MAX;
const CONT_LO: u8 = 0x80;
const CONT_HI: u8 = 0xBF;

impl Default for Utf8Validator {
    fn default() -> Self {
        Utf8Validator {
            need: 0,
            lo: CONT_LO,
            hi: CONT_HI,
        }
    }
}

impl Utf8Validator {
    /// Validate the next chunk. `Err(())` as soon as the bytes seen so far cannot be a prefix of valid UTF-8.
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ()> {
        let mut rest = chunk;
        // Finish a code point left open by the previous chunk (at most 3 bytes).
        while self.need > 0 {
            match rest.split_first() {
                Some((&byte, tail)) => {
                    self.step(byte)?;
                    rest = tail;
                }
                None => return self.check(),
            }
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            // Invalid bytes inside the chunk: no continuation can repair that.
            Err(e) if e.error_len().is_some() => {
                self.need = FAILED;
                Err(())
            }
            // A valid prefix of a code point at the end: remember how it must continue.
            Err(e) => rest[e.valid_up_to()..]
                .iter()
                .try_for_each(|&b| self.step(b)),
        }
    }

    /// True when the input so far ends on a code point boundary (a message may end here).
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }

    /// Advance by one byte.
    fn step(&mut self, byte: u8) -> Result<(), ()> {
        self.check()?;
        if self.need > 0 {
            if !(self.lo..=self.hi).contains(&byte) {
                self.need = FAILED;
                return Err(());
            }
            self.need -= 1;
            (self.lo, self.hi) = (CONT_LO, CONT_HI);
            return Ok(());
        }
        let (need, lo, hi) = match byte {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, CONT_LO, CONT_HI),
            0xE0 => (2, 0xA0, CONT_HI), // no overlong 3-byte forms
            0xED => (2, CONT_LO, 0x9F), // no surrogates
            0xE1..=0xEF => (2, CONT_LO, CONT_HI),
            0xF0 => (3, 0x90, CONT_HI), // no overlong 4-byte forms
            0xF1..=0xF3 => (3, CONT_LO, CONT_HI),
            0xF4 => (3, CONT_LO, 0x8F), // nothing above U+10FFFF
            _ => {
                self.need = FAILED;
                return Err(());
            }
        };
        (self.need, self.lo, self.hi) = (need, lo, hi);
        Ok(())
    }

    /// `Err` once the input has been found invalid (failure is sticky).
    fn check(&self) -> Result<(), ()> {
        if self.need == FAILED { Err(()) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` split at `split` and compare with `std::str::from_utf8` on the whole.
    fn agrees_with_std(input: &[u8], split: usize) {
        let expected = std::str::from_utf8(input).is_ok();
        let mut v = Utf8Validator::default();
        let (a, b) = input.split_at(split);
        let got = v.feed(a).is_ok() && v.feed(b).is_ok() && v.is_complete();
        assert_eq!(got, expected, "input {input:02x?} split at {split}");
    }

    /// Feeding byte by byte must fail at exactly the first byte std rejects.
    fn fails_at_first_detectable_byte(input: &[u8]) {
        let mut v = Utf8Validator::default();
        for (i, &byte) in input.iter().enumerate() {
            let prefix_could_be_valid = match std::str::from_utf8(&input[..=i]) {
                Ok(_) => true,
                Err(e) => e.error_len().is_none(),
            };
            assert_eq!(
                v.feed(&[byte]).is_ok(),
                prefix_could_be_valid,
                "{input:02x?} at {i}"
            );
            if !prefix_could_be_valid {
                return;
            }
        }
    }

    const EDGE_CASES: &[&[u8]] = &[
        b"",
        b"hello",
        "κόσμε".as_bytes(),
        "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}".as_bytes(),
        "\u{D7FF}\u{E000}".as_bytes(),
        &[0xC0, 0x80],             // overlong NUL
        &[0xC1, 0xBF],             // overlong
        &[0xE0, 0x80, 0x80],       // overlong 3-byte
        &[0xE0, 0x9F, 0xBF],       // overlong 3-byte
        &[0xED, 0xA0, 0x80],       // U+D800 surrogate
        &[0xED, 0xBF, 0xBF],       // U+DFFF surrogate
        &[0xF0, 0x8F, 0xBF, 0xBF], // overlong 4-byte
        &[0xF4, 0x90, 0x80, 0x80], // U+110000
        &[0xF5, 0x80, 0x80, 0x80],
        &[0xFF],
        &[0x80],
        &[0xE2, 0x82],       // truncated
        &[0xF0, 0x9F, 0x98], // truncated emoji
        &[0xE2, 0x82, 0x41], // interrupted
        &[
            0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80,
            0x65,
        ],
    ];

    #[test]
    fn edge_cases_agree_with_std_at_every_split() {
        for input in EDGE_CASES {
            for split in 0..=input.len() {
                agrees_with_std(input, split);
            }
            fails_at_first_detectable_byte(input);
        }
    }

    #[test]
    fn random_inputs_agree_with_std_at_every_split() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Bias towards bytes that form (almost) valid multi-byte sequences.
        let alphabet = [
            0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF,
            0xF0, 0xF4, 0xF5,
        ];
        for _ in 0..3000 {
            let len = (next() % 12) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for split in 0..=input.len() {
                agrees_with_std(&input, split);
            }
            fails_at_first_detectable_byte(&input);
        }
        for _ in 0..300 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for split in 0..=input.len() {
                agrees_with_std(&input, split);
            }
        }
    }

    #[test]
    fn failure_is_sticky() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(&[0xFF]).is_err());
        assert!(v.feed(b"ok").is_err());
    }

    #[test]
    fn is_small() {
        assert!(size_of::<Utf8Validator>() <= 4);
    }
}
