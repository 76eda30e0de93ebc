//! Replays the committed fuzz corpora (`fuzz/corpus/resp_request`, `resp_reply`) on
//! stable Rust with the fuzz targets' own checks, so CI keeps every input the fuzzers
//! found interesting (and every crash they found, once fixed) passing.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "corpus input {} fails", path.display());
        n += 1;
    }
    assert!(n >= 5, "the {target} corpus has {n} inputs");
}

#[test]
fn request_corpus() {
    replay("resp_request", codis_resp::fuzzing::request_input);
}

#[test]
fn reply_corpus() {
    replay("resp_reply", codis_resp::fuzzing::reply_input);
}
