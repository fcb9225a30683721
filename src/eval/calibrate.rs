//! Calibration on held-out data: the fusion weights by logistic regression over the candidates
//! each query's search returns (is this candidate the right entry?), then the answer threshold
//! and margin that answer the most in-scope queries right while keeping out-of-scope recall at
//! the target.

use crate::config::{Fusion, Signals};

/// The candidates of one query, best first, with the right entry when there is one.
pub(crate) struct Scored {
    pub(crate) gold: Option<String>,
    pub(crate) top: Vec<(String, Signals)>,
}

/// The features of a candidate: the classifier's probability, the retrieval cosine, and (with
/// the encoder) the semantic head's probability and the nearest question's cosine.
fn features(s: &Signals, semantic: bool) -> Vec<f64> {
    let mut f = vec![f64::from(s.classifier), f64::from(s.retrieval)];
    if semantic {
        f.push(f64::from(s.semantic.unwrap_or(0.0)));
        f.push(f64::from(s.nearest.unwrap_or(0.0)));
    }
    f
}

/// Fits the fusion by Newton's method on the log-loss of every candidate (right or not), with a
/// small L2 penalty so that a signal that never varies keeps a finite weight.
pub(crate) fn fit_fusion(scored: &[Scored], semantic: bool) -> Fusion {
    let rows: Vec<(Vec<f64>, f64)> = scored
        .iter()
        .flat_map(|s| {
            s.top.iter().map(|(id, signals)| {
                let mut x = features(signals, semantic);
                x.push(1.0);
                (x, if s.gold.as_deref() == Some(id.as_str()) { 1.0 } else { 0.0 })
            })
        })
        .collect();
    let dims = if semantic { 5 } else { 3 };
    let mut w = vec![0.0f64; dims];
    for _ in 0..50 {
        let mut grad = vec![0.0f64; dims];
        let mut hess = vec![vec![0.0f64; dims]; dims];
        for (x, y) in &rows {
            let z: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            for i in 0..dims {
                grad[i] += (p - y) * x[i];
                for j in 0..dims {
                    hess[i][j] += p * (1.0 - p) * x[i] * x[j];
                }
            }
        }
        for i in 0..dims {
            // No penalty on the bias (the last weight).
            if i + 1 < dims {
                grad[i] += 1e-3 * w[i];
                hess[i][i] += 1e-3;
            }
            hess[i][i] += 1e-9;
        }
        let Some(step) = solve(hess, grad) else { break };
        let size: f64 = step.iter().map(|s| s * s).sum::<f64>().sqrt();
        for (w, s) in w.iter_mut().zip(&step) {
            *w -= s;
        }
        if size < 1e-8 {
            break;
        }
    }
    let f = |i: usize| w[i] as f32;
    if semantic {
        Fusion {
            classifier_weight: f(0),
            retrieval_weight: f(1),
            semantic_weight: f(2),
            nearest_weight: f(3),
            bias: f(4),
        }
    } else {
        Fusion {
            classifier_weight: f(0),
            retrieval_weight: f(1),
            semantic_weight: 0.0,
            nearest_weight: 0.0,
            bias: f(2),
        }
    }
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row][col] / a[col][col];
            let pivot_row = a[col].clone();
            for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *x -= factor * p;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let sum: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - sum) / a[row][row];
    }
    Some(x)
}

/// The answer threshold and margin to use: the most in-scope queries answered right among the
/// choices whose out-of-scope recall is at least `target_oos` (0 to 1); when none reaches it,
/// the best sum of in-scope accuracy and out-of-scope recall.
pub(crate) fn pick_thresholds(scored: &[Scored], fusion: &Fusion, target_oos: f64) -> (f32, f32) {
    let conf = |(_, s): &(String, Signals)| fusion.confidence(s);
    let rows: Vec<(Option<bool>, f32, f32)> = scored
        .iter()
        .map(|s| {
            let first = s.top.first().map(conf).unwrap_or(0.0);
            let second = s.top.get(1).map(conf).unwrap_or(0.0);
            let right = s.gold.as_ref().map(|g| s.top.first().is_some_and(|t| &t.0 == g));
            (right, first, first - second)
        })
        .collect();
    let inscope = rows.iter().filter(|r| r.0.is_some()).count().max(1) as f64;
    let oos = rows.iter().filter(|r| r.0.is_none()).count();
    let mut best_constrained: Option<(f64, f32, f32)> = None;
    let mut best_sum = (f64::MIN, 0.5, 0.0);
    for t in (1..100).map(|t| t as f32 / 100.0) {
        for m in (0..=20).map(|m| m as f32 / 100.0) {
            let answered = |r: &(Option<bool>, f32, f32)| r.1 >= t && r.2 >= m;
            let right = rows.iter().filter(|r| r.0 == Some(true) && answered(r)).count() as f64 / inscope;
            let rejected = rows.iter().filter(|r| r.0.is_none() && !answered(r)).count();
            let recall = if oos == 0 { 1.0 } else { rejected as f64 / oos as f64 };
            if recall + 1e-9 >= target_oos && best_constrained.is_none_or(|b| right > b.0) {
                best_constrained = Some((right, t, m));
            }
            if right + recall > best_sum.0 {
                best_sum = (right + recall, t, m);
            }
        }
    }
    best_constrained.map_or((best_sum.1, best_sum.2), |(_, t, m)| (t, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(gold: Option<&str>, top: &str, classifier: f32, retrieval: f32) -> Scored {
        let signals = Signals { classifier, retrieval, semantic: None, nearest: None };
        Scored { gold: gold.map(str::to_owned), top: vec![(top.to_owned(), signals)] }
    }

    #[test]
    fn calibration_learns_which_signal_predicts_a_right_answer() {
        // Right answers have a confident classifier; wrong ones and out-of-scope queries do not.
        let mut rows = Vec::new();
        for i in 0..40 {
            let jitter = (i % 7) as f32 * 0.02;
            rows.push(scored(Some("a"), "a", 0.8 + jitter, 0.5));
            rows.push(scored(None, "a", 0.2 + jitter, 0.5));
        }
        let fusion = fit_fusion(&rows, false);
        assert!(fusion.classifier_weight > 1.0, "{fusion:?}");
        let (threshold, _) = pick_thresholds(&rows, &fusion, 0.8);
        let conf =
            |c: f32| fusion.confidence(&Signals { classifier: c, retrieval: 0.5, ..Signals::default() });
        assert!(conf(0.2 + 0.12) < threshold && threshold <= conf(0.8), "{threshold}");
    }

    #[test]
    fn the_semantic_weights_are_fitted_when_present() {
        let mut rows = Vec::new();
        for i in 0..30 {
            let j = (i % 5) as f32 * 0.01;
            let s = |h: f32, n: f32| Signals {
                classifier: 0.3,
                retrieval: 0.2,
                semantic: Some(h),
                nearest: Some(n),
            };
            rows.push(Scored {
                gold: Some("a".into()),
                top: vec![("a".into(), s(0.9 - j, 0.93)), ("b".into(), s(0.05, 0.85))],
            });
            rows.push(Scored { gold: None, top: vec![("a".into(), s(0.3 + j, 0.84))] });
        }
        let fusion = fit_fusion(&rows, true);
        assert!(fusion.semantic_weight > 1.0, "{fusion:?}");
    }

    #[test]
    fn solving_a_small_system() {
        let x = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-9 && (x[1] - 1.4).abs() < 1e-9, "{x:?}");
    }
}
