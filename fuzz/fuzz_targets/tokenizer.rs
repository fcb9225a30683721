//! Any text through the model's own tokenizer: ids within the vocabulary, never a panic. The
//! tokenizer comes from the installed model (`MIBOT_FUZZ_MODEL`, by default
//! `../target/mibot-model/model.bin`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mibot::encoder::tokenizer::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = std::env::var("MIBOT_FUZZ_MODEL").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target/mibot-model/model.bin").into()
        });
        let weights = mibot::encoder::model::Weights::read(std::path::Path::new(&path))
            .unwrap_or_else(|e| panic!("the model in {path} loads (mibot model install): {e}"));
        weights.tokenizer().expect("the model holds its tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let tokenizer = tokenizer();
        let ids = tokenizer.encode(text);
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.len()), "an id outside the vocabulary");
    }
});
