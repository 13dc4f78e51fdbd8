//! The bound on writes queued by the async write methods: they queue at once
//! and return a future, so a caller that never awaits them could queue
//! without end. Beyond [`StoreConfig::max_queued_writes`] or
//! [`StoreConfig::max_queued_bytes`] an async write is refused (nothing of
//! it applied). Blocking writes are not refused: each waits on its own
//! thread, so their number is that of the caller's threads.

use std::path::Path;

use crate::StoreConfig;
use crate::error::Error;

/// `Ok` when one more write of `cost` bytes fits behind `writes` queued
/// ones of `bytes`; a lone write always fits.
pub(super) fn admit(
    config: &StoreConfig,
    path: &Path,
    writes: usize,
    bytes: usize,
    cost: usize,
) -> Result<(), Error> {
    let fits = writes < config.max_queued_writes && bytes + cost <= config.max_queued_bytes;
    if writes == 0 || fits {
        return Ok(());
    }
    Err(Error::QueueFull {
        path: path.to_path_buf(),
        writes,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_writes_and_bytes_a_lone_write_passes() {
        let config = StoreConfig {
            max_queued_writes: 2,
            max_queued_bytes: 100,
            ..StoreConfig::default()
        };
        let p = Path::new("m.json");
        assert!(admit(&config, p, 0, 0, 1_000).is_ok());
        assert!(admit(&config, p, 1, 10, 10).is_ok());
        assert!(admit(&config, p, 2, 20, 10).is_err());
        assert!(admit(&config, p, 1, 95, 10).is_err());
    }
}
