//! The memory cap of one instance: wasmtime's [`StoreLimits`], remembering a refusal so that
//! the trap it causes can be named.

use wasmtime::{ResourceLimiter, Result, StoreLimits, StoreLimitsBuilder};

/// Most entries a table may have: far above what a compiled program's function tables need.
const TABLE_ELEMENTS: usize = 1 << 20;

/// [`StoreLimits`] that trap on a refused growth and remember it.
pub(super) struct Limits {
    inner: StoreLimits,
    /// Set when a memory growth was refused.
    pub(super) refused: bool,
}

impl Limits {
    /// At most `memory` bytes of linear memory per instance (and at most [`TABLE_ELEMENTS`]
    /// entries per table, so that tables cannot grow without bound either).
    pub(super) fn new(memory: usize) -> Self {
        Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory)
                .table_elements(TABLE_ELEMENTS)
                .trap_on_grow_failure(true)
                .build(),
            refused: false,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        let verdict = self.inner.memory_growing(current, desired, maximum);
        self.refused |= !matches!(verdict, Ok(true));
        verdict
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}
