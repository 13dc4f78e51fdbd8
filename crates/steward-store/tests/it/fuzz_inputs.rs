//! The fuzz entry points over random and truncated inputs: no panics.

use rand::{RngExt, SeedableRng};
use steward_store::Store;

#[test]
fn readers_survive_random_and_truncated_inputs() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let map = crate::jsongen::map(&mut rng, 0, 10);
    let valid_snapshot = steward_store::to_python_json(&map);
    // The layout other writers use: one line (the repair reader resyncs by depth there).
    let one_line = serde_json::to_string(&map).unwrap();
    let (_d, path) = crate::temp_store();
    let s = Store::builder(&path)
        .compact_on_close(false)
        .build()
        .unwrap();
    for i in 0..20 {
        s.upsert_blocking(&format!("k{i}"), crate::jsongen::value(&mut rng, 0))
            .unwrap();
        s.delete_blocking(&format!("k{}", i / 2)).unwrap();
    }
    s.reset_blocking().unwrap();
    s.close_blocking().unwrap();
    let valid_log = std::fs::read(s.log_path()).unwrap();
    for seed in [valid_snapshot.as_bytes(), &valid_log[..]] {
        for cut in 0..seed.len().min(400) {
            steward_store::fuzzing::snapshot(&seed[..cut]);
            steward_store::fuzzing::log(&seed[..cut]);
            steward_store::fuzzing::repair(&seed[..cut]);
        }
        for round in 0..300 {
            let b = mutate(&mut rng, seed);
            steward_store::fuzzing::snapshot(&b);
            steward_store::fuzzing::log(&b);
            steward_store::fuzzing::log_payload(&b[b.len().min(32)..]);
            if round % 3 == 0 {
                steward_store::fuzzing::repair(&b);
            }
        }
    }
    for _ in 0..100 {
        let b = mutate(&mut rng, one_line.as_bytes());
        steward_store::fuzzing::repair(&b);
    }
    for _ in 0..300 {
        let b: Vec<u8> = (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect();
        steward_store::fuzzing::snapshot(&b);
        steward_store::fuzzing::log(&b);
        steward_store::fuzzing::log_payload(&b);
        steward_store::fuzzing::repair(&b);
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = "[".repeat(100_000);
    steward_store::fuzzing::snapshot(format!("{{\"a\": {deep}").as_bytes());
    steward_store::fuzzing::repair(format!("{{\"a\": {deep}").as_bytes());
}

/// `seed` with one to five random bytes replaced.
fn mutate(rng: &mut impl rand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let i = rng.random_range(0..b.len().max(1));
        if let Some(x) = b.get_mut(i) {
            *x = rng.random();
        }
    }
    b
}
