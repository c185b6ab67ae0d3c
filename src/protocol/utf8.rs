//! Incremental UTF-8 validation, so invalid text fails as early as it is detectable, even when a code
//! point is split across frames or reads.

/// Validator state carried between chunks. Small (a few bytes) because it lives in every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    // implementation-defined
}

impl Utf8Validator {
    /// Validate the next chunk. `Err(())` as soon as the bytes seen so far cannot be a prefix of valid UTF-8.
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ()> {
        let _ = chunk;
        todo!()
    }
    /// True when the input so far ends on a code point boundary (a message may end here).
    pub fn is_complete(&self) -> bool {
        todo!()
    }
}
