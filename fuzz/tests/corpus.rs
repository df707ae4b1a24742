//! Every committed corpus input (`fuzz/corpus/<target>/`), through its
//! target's body: what the fuzzer once found interesting stays checked in
//! every test run, without libFuzzer. The packet targets need root and BPF,
//! and fail without them.

use std::path::Path;

#[test]
fn every_committed_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, body) in swarm_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a corpus)", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: an empty corpus", dir.display());
        for input in &inputs {
            let data = std::fs::read(input).expect("reading a corpus input");
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                panic!(
                    "{name} fails on {} (replay it: scripts/fuzz.sh --replay {name} {})",
                    input.display(),
                    input.display()
                );
            }
        }
    }
}
