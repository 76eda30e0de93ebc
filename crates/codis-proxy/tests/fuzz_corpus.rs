//! Replays the router fuzz target's committed corpus (`fuzz/corpus/router`) on stable
//! Rust with the target's own checks.

use std::path::Path;

#[test]
fn router_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/router");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| codis_proxy::command::fuzzing::check_route(&data));
        assert!(r.is_ok(), "corpus input {} fails", path.display());
        n += 1;
    }
    assert!(n >= 5, "the router corpus has {n} inputs");
}
