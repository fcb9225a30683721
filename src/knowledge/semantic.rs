//! The semantic signal of a store's knowledge: the sentence encoder's vector of every question
//! variant (FAQ standard and similar questions, intent examples), of every product's name, and
//! a classifier head trained on the variants' vectors (and the FAQ answers') when the knowledge
//! is built.
//!
//! Two numbers come out for an entry and a message's vector: the head's probability (a softmax
//! regression over the entries, like the lexical classifier's but on meaning rather than
//! words), and the cosine of the entry's nearest variant. Both join the lexical signals in the
//! fused confidence ([`crate::config::Fusion`]).

use rayon::prelude::*;

/// Vectors for the knowledge's texts, in the order [`SemanticTexts::all`] lists them.
#[derive(Debug, Clone, Default)]
pub struct SemanticTexts {
    /// One per question variant, in the knowledge base's variant order.
    pub variants: Vec<String>,
    /// FAQ answers with their class, extra examples for the head.
    pub answers: Vec<(usize, String)>,
    /// One per product: its names and category.
    pub products: Vec<String>,
}

impl SemanticTexts {
    /// Every text, variants first, then answers, then products.
    pub fn all(&self) -> Vec<String> {
        self.variants
            .iter()
            .cloned()
            .chain(self.answers.iter().map(|(_, t)| t.clone()))
            .chain(self.products.iter().cloned())
            .collect()
    }
}

/// A trained softmax regression over unit vectors, centred on the training vectors' mean.
#[derive(Debug, Clone)]
struct Head {
    classes: usize,
    mean: Vec<f32>,
    /// Class-major: class `c`'s weights are `weights[c * dim..][..dim]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// A store's semantic index, immutable once built.
#[derive(Debug, Clone)]
pub struct Semantic {
    dim: usize,
    /// Row `i` is variant `i`'s unit vector.
    variants: Vec<f32>,
    products: Vec<f32>,
    head: Option<Head>,
}

/// Most classes for which a head is trained: past this, the nearest variant alone decides, so
/// that training time and memory stay bounded for very large packs.
pub const MAX_HEAD_CLASSES: usize = 4000;

impl Semantic {
    /// Builds the index from the texts' vectors (`vectors` in [`SemanticTexts::all`] order) and
    /// each variant's class (`None`: the variant is not a head example); trains the head when
    /// there are two to [`MAX_HEAD_CLASSES`] classes.
    pub fn build(
        texts: &SemanticTexts,
        vectors: &[Vec<f32>],
        variant_class: &[Option<usize>],
        classes: usize,
    ) -> Option<Self> {
        let dim = vectors.first().map(Vec::len)?;
        let expected = texts.variants.len() + texts.answers.len() + texts.products.len();
        if vectors.len() != expected
            || variant_class.len() != texts.variants.len()
            || vectors.iter().any(|v| v.len() != dim)
        {
            return None;
        }
        let (variants, rest) = vectors.split_at(texts.variants.len());
        let (answers, products) = rest.split_at(texts.answers.len());
        let head = (2..=MAX_HEAD_CLASSES).contains(&classes).then(|| {
            let mut examples: Vec<(&[f32], usize)> =
                variants.iter().zip(variant_class).filter_map(|(v, &c)| Some((v.as_slice(), c?))).collect();
            examples.extend(answers.iter().zip(&texts.answers).map(|(v, (c, _))| (v.as_slice(), *c)));
            Head::train(&examples, dim, classes)
        });
        Some(Self { dim, variants: variants.concat(), products: products.concat(), head })
    }

    /// The vectors' width.
    pub fn dimensions(&self) -> usize {
        self.dim
    }

    /// Whether a head was trained.
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// The cosine of `query` and variant `variant`.
    pub fn variant_cosine(&self, query: &[f32], variant: usize) -> f32 {
        self.variants.get(variant * self.dim..(variant + 1) * self.dim).map_or(0.0, |v| dot(query, v))
    }

    /// Every variant's cosine with `query`.
    pub fn all_variant_cosines(&self, query: &[f32]) -> Vec<f32> {
        self.variants.chunks_exact(self.dim).map(|v| dot(query, v)).collect()
    }

    /// Every product's cosine with `query`.
    pub fn product_cosines(&self, query: &[f32]) -> Vec<f32> {
        self.products.chunks_exact(self.dim).map(|v| dot(query, v)).collect()
    }

    /// The head's probability for every class, or `None` without a head.
    pub fn probabilities(&self, query: &[f32]) -> Option<Vec<f32>> {
        self.head.as_ref().map(|h| h.probabilities(query))
    }

    /// Bytes held, for the operator's figures.
    pub fn bytes(&self) -> usize {
        let head = self.head.as_ref().map_or(0, |h| h.weights.len() + h.mean.len() + h.bias.len());
        4 * (self.variants.len() + self.products.len() + head)
    }
}

/// Iterations of the optimiser: enough for the loss to settle on packs and public sets alike.
const ITERATIONS: usize = 100;
const LEARNING_RATE: f32 = 0.05;
/// L2 penalty on the weights.
const L2: f32 = 1e-4;

impl Head {
    /// Fits by full-batch Adam on the mean cross-entropy plus an L2 penalty; deterministic.
    fn train(examples: &[(&[f32], usize)], dim: usize, classes: usize) -> Self {
        let n = examples.len().max(1) as f32;
        let mut mean = vec![0.0f32; dim];
        for (x, _) in examples {
            for (m, v) in mean.iter_mut().zip(*x) {
                *m += v / n;
            }
        }
        let centred: Vec<(Vec<f32>, usize)> =
            examples.iter().map(|(x, c)| (x.iter().zip(&mean).map(|(v, m)| v - m).collect(), *c)).collect();
        let mut head = Self { classes, mean, weights: vec![0.0; classes * dim], bias: vec![0.0; classes] };
        let mut adam_w = Adam::new(classes * dim);
        let mut adam_b = Adam::new(classes);
        for step in 1..=ITERATIONS {
            // Gradients summed over chunks of examples in parallel, then averaged.
            let zeros = || (vec![0.0f32; classes * dim], vec![0.0f32; classes], vec![0.0f32; classes]);
            let (mut grad_w, grad_b, _) = centred
                .par_chunks(256)
                .fold(zeros, |(mut gw, mut gb, mut p), chunk| {
                    for (x, c) in chunk {
                        head.logits_centred(x, &mut p);
                        softmax(&mut p);
                        p[*c] -= 1.0;
                        for (k, &err) in p.iter().enumerate() {
                            if err.abs() > 1e-7 {
                                axpy(err, x, &mut gw[k * dim..(k + 1) * dim]);
                            }
                            gb[k] += err;
                        }
                    }
                    (gw, gb, p)
                })
                .reduce(zeros, |(mut aw, mut ab, p), (bw, bb, _)| {
                    aw.iter_mut().zip(bw).for_each(|(a, b)| *a += b);
                    ab.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                    (aw, ab, p)
                });
            for (g, w) in grad_w.iter_mut().zip(&head.weights) {
                *g = *g / n + L2 * w;
            }
            let grad_b: Vec<f32> = grad_b.into_iter().map(|g| g / n).collect();
            adam_w.step(&mut head.weights, &grad_w, step);
            adam_b.step(&mut head.bias, &grad_b, step);
        }
        head
    }

    fn logits_centred(&self, x: &[f32], out: &mut [f32]) {
        let dim = self.mean.len();
        for (k, o) in out.iter_mut().enumerate() {
            *o = dot(x, &self.weights[k * dim..(k + 1) * dim]) + self.bias[k];
        }
    }

    fn probabilities(&self, query: &[f32]) -> Vec<f32> {
        let centred: Vec<f32> = query.iter().zip(&self.mean).map(|(v, m)| v - m).collect();
        let mut p = vec![0.0; self.classes];
        self.logits_centred(&centred, &mut p);
        softmax(&mut p);
        p
    }
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }

    fn step(&mut self, params: &mut [f32], grad: &[f32], t: usize) {
        let (b1, b2) = (0.9f32, 0.999f32);
        let exp = i32::try_from(t).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - b1.powi(exp), 1.0 - b2.powi(exp));
        for (((p, g), m), v) in params.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= LEARNING_RATE * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// A dot product in eight lanes, so that the compiler can keep it in vector registers.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32).sin()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }

    #[test]
    fn the_head_learns_which_direction_is_which_class() {
        // Three classes around three directions, four noisy variants each.
        let centres = [[1.0, 0.2, 0.1, 0.0], [0.1, 1.0, 0.0, 0.2], [0.0, 0.1, 0.3, 1.0]];
        let mut texts = SemanticTexts::default();
        let mut vectors = Vec::new();
        let mut classes = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for j in 0..4 {
                let noisy: Vec<f32> =
                    centre.iter().enumerate().map(|(i, x)| x + 0.05 * ((i + j) % 3) as f32).collect();
                texts.variants.push(format!("{c}-{j}"));
                vectors.push(unit(&noisy));
                classes.push(c);
            }
        }
        let classes: Vec<Option<usize>> = classes.into_iter().map(Some).collect();
        let semantic = Semantic::build(&texts, &vectors, &classes, 3).unwrap();
        assert!(semantic.has_head());
        for (c, centre) in centres.iter().enumerate() {
            let p = semantic.probabilities(&unit(centre)).unwrap();
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(best, c, "{p:?}");
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
        assert!((semantic.variant_cosine(&vectors[5], 5) - 1.0).abs() < 1e-5);
        assert_eq!(semantic.all_variant_cosines(&vectors[0]).len(), 12);
    }

    #[test]
    fn mismatched_vectors_build_nothing() {
        let texts = SemanticTexts { variants: vec!["a".into(), "b".into()], ..SemanticTexts::default() };
        assert!(Semantic::build(&texts, &[vec![1.0, 0.0]], &[Some(0), Some(1)], 2).is_none());
        assert!(Semantic::build(&texts, &[vec![1.0, 0.0], vec![1.0]], &[Some(0), Some(1)], 2).is_none());
    }
}
