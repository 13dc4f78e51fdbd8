//! Entry points for fuzz targets and robustness tests: they parse arbitrary
//! bytes with the store's readers and must never panic. Fuzzing and tests
//! only (feature `fuzzing`, never on by default): not part of the API a
//! user builds on.

/// Parses `bytes` as a snapshot; on success, checks that writing the map
/// back and reading it again gives the same map (the Python format
/// round-trips).
pub fn snapshot(bytes: &[u8]) {
    let Ok(map) = crate::json::parse_object(bytes) else {
        return;
    };
    let text = crate::json::to_python_json(&map);
    match crate::json::parse_object(text.as_bytes()) {
        Ok(again) => assert_eq!(again, map, "snapshot does not round-trip"),
        Err(e) => panic!("written snapshot does not parse: {e:?}"),
    }
}

/// Parses `bytes` as a log (header, frames, operations).
pub fn log(bytes: &[u8]) {
    if let Ok(scan) = crate::log::scan(bytes) {
        assert!(scan.valid_len as usize <= bytes.len());
        let mut map = serde_json::Map::new();
        for ops in scan.frames {
            crate::files::apply(&mut map, ops);
        }
    }
}

/// Wraps `payload` as one valid frame after a valid header, so a fuzzer
/// reaches the operation decoder instead of stopping at the checksum.
pub fn log_payload(payload: &[u8]) {
    let mut bytes = crate::log::encode_header(crate::log::SnapshotId::of(None)).to_vec();
    bytes.extend(crate::log::frame(payload));
    log(&bytes);
}

/// Salvages `bytes` as a damaged snapshot, expiry file and log (what
/// `repair` reads): no panic; the lost ranges are in order, inside the
/// input and apart; what is kept writes back in the Python format and
/// reads again the same; and bytes the strict reader accepts lose nothing
/// and give the strict reader's map.
pub fn repair(bytes: &[u8]) {
    let found = crate::salvage::object(bytes);
    gaps_in_order(&found.gaps, bytes.len());
    let text = crate::json::to_python_json(&found.map);
    match crate::json::parse_object(text.as_bytes()) {
        Ok(again) => assert_eq!(again, found.map, "salvaged entries do not round-trip"),
        Err(e) => panic!("salvaged entries do not parse: {e:?}"),
    }
    if let Ok(strict) = crate::json::parse_object(bytes) {
        assert_eq!(
            found.map, strict,
            "the tolerant reader differs on a valid file"
        );
        assert!(found.gaps.is_empty(), "a valid file lost {:?}", found.gaps);
    }
    let batches = crate::salvage::log(bytes);
    gaps_in_order(&batches.gaps, bytes.len());
    let mut map = serde_json::Map::new();
    for ops in batches.frames {
        crate::files::apply(&mut map, ops);
    }
}

/// Lost ranges in order, apart, and inside an input of `len` bytes.
fn gaps_in_order(gaps: &[crate::salvage::Gap], len: usize) {
    let mut end = 0;
    for g in gaps {
        assert!(g.from >= end && g.from <= g.to && g.to <= len, "gap {g:?}");
        end = g.to;
    }
}
