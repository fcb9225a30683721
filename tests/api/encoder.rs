//! The encoder against reference outputs made once with the weights' own package engine
//! (`tests/fixtures/encoder/`): the tokenizer's ids, and the embeddings within cosine 0.99.

use serde::Deserialize;

use crate::helpers::shared_encoder;

#[derive(Deserialize)]
struct Tokens {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Vector {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoder").join(name);
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn the_tokenizer_gives_the_reference_ids() {
    let encoder = shared_encoder().get().expect("the encoder runs");
    let cases: Vec<Tokens> = fixture("tokens.jsonl");
    assert!(cases.len() >= 10);
    for case in cases {
        assert_eq!(encoder.tokenize(&case.text), case.ids, "{:?}", case.text);
    }
}

#[tokio::test]
async fn embeddings_match_the_reference_vectors() {
    let encoder = shared_encoder().get().expect("the encoder runs");
    let cases: Vec<Vector> = fixture("vectors.jsonl");
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    // Batched, as pack texts are, and one at a time, as a shopper's message is.
    let batch = encoder.embed_many(&texts).await.unwrap();
    for (case, got) in cases.iter().zip(&batch) {
        assert_eq!(encoder.token_ids(&case.text), case.ids, "{:?}", case.text);
        assert_eq!(got.len(), 384);
        let similarity = cosine(got, &case.vector);
        assert!(similarity >= 0.99, "{:?}: cosine {similarity}", case.text);
        let single = match encoder.query(&case.text).await {
            mibot::encoder::Embedded::Encoded(v) | mibot::encoder::Embedded::Cached(v) => v,
            other => panic!("{other:?}"),
        };
        // Activations are quantised per batch, so a text's vector moves a little with its company.
        let agree = cosine(&single, got);
        assert!(agree > 0.995, "a batch and a single query agree: {:?} {agree}", case.text);
    }
    // Meaning, not words: 邮费 and 运费 are close; an unrelated message is not.
    let texts =
        ["退货运费谁出", "退货邮费谁承担", "my parcel arrived with a cracked screen"].map(String::from);
    let v = encoder.embed_many(&texts).await.unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.05);
}
