//! Accuracy predictors: from per-block quality (NSR) features to accuracy.
//!
//! A predictor is fitted once per space and reused for every device, so it is a value that can
//! be saved (`to_json`) and reloaded ([`from_json`]). Three are built in:
//! - `linear`: least squares on the features plus an intercept (the paper's predictor);
//! - `ridge`: the same with an L2 penalty whose strength is chosen by k-fold cross-validation
//!   inside every fit;
//! - `gbt`: gradient-boosted regression trees of depth 2, a non-linear model for spaces where
//!   block qualities interact.
//!
//! [`cross_validate`] gives out-of-fold predictions (leave-one-out when `folds` equals the
//! number of samples), from which [`crate::stats`] computes Kendall tau, Spearman and MSE.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SdkError};

/// A model from features (one per block, plus whatever the model adds) to accuracy.
pub trait Predictor: Send + Sync {
    /// Name, e.g. `linear`, `ridge`, `gbt`.
    fn name(&self) -> &str;

    /// Fits the model to `features[i] -> targets[i]`.
    fn fit(&mut self, features: &[Vec<f64>], targets: &[f64]) -> Result<()>;

    /// Predicted accuracy for one feature vector.
    fn predict(&self, features: &[f64]) -> Result<f64>;

    /// The fitted state, to persist in `predictor.json`.
    fn to_json(&self) -> serde_json::Value;
}

/// The names of the built-in predictors.
pub const PREDICTORS: [&str; 3] = ["linear", "ridge", "gbt"];

/// An unfitted built-in predictor by name.
pub fn new_predictor(name: &str) -> Result<Box<dyn Predictor>> {
    Ok(match name {
        "linear" => Box::new(Linear::default()),
        "ridge" => Box::new(Ridge::default()),
        "gbt" => Box::new(Gbt::default()),
        other => return Err(SdkError::Unknown { kind: "predictor", name: other.into(), known: PREDICTORS.join(", ") }),
    })
}

/// A fitted predictor from its `to_json` form.
pub fn from_json(value: &serde_json::Value) -> Result<Box<dyn Predictor>> {
    let state: State = serde_json::from_value(value.clone()).map_err(|e| {
        SdkError::Config(format!("not a fitted predictor ({e}); known kinds: {}", PREDICTORS.join(", ")))
    })?;
    let p: Box<dyn Predictor> = match state {
        State::Linear(m) => Box::new(Linear { model: Some(m) }),
        State::Ridge { alpha, model } => Box::new(Ridge { alpha: Some(alpha), model: Some(model) }),
        State::Gbt(m) => Box::new(Gbt { model: Some(m), ..Gbt::default() }),
    };
    Ok(p)
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum State {
    Linear(LinearModel),
    Ridge { alpha: f64, model: LinearModel },
    Gbt(GbtModel),
}

fn check_data(features: &[Vec<f64>], targets: &[f64], min: usize) -> Result<usize> {
    if features.len() != targets.len() {
        return Err(SdkError::Config(format!("{} feature rows but {} targets", features.len(), targets.len())));
    }
    if features.len() < min {
        return Err(SdkError::Config(format!("a fit needs at least {min} samples, got {}", features.len())));
    }
    let dims = features[0].len();
    if let Some(row) = features.iter().find(|r| r.len() != dims) {
        return Err(SdkError::Config(format!("feature rows of different lengths ({dims} and {})", row.len())));
    }
    if features.iter().flatten().chain(targets).any(|v| !v.is_finite()) {
        return Err(SdkError::Config("features or targets contain NaN or infinity".into()));
    }
    Ok(dims)
}

fn unfitted(name: &str) -> SdkError {
    SdkError::Config(format!("the {name} predictor is used before it was fitted"))
}

fn check_dims(expected: usize, features: &[f64]) -> Result<()> {
    if features.len() != expected {
        return Err(SdkError::Config(format!(
            "the predictor was fitted on {expected} features, got {}",
            features.len()
        )));
    }
    Ok(())
}

/// `y = bias + Σ weight_i x_i`, in the features' own units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    /// Coefficient per feature.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
}

impl LinearModel {
    /// Least squares with an L2 penalty `alpha` on the standardised weights (the intercept is
    /// not penalised); `alpha = 0` is ordinary least squares.
    pub fn fit(features: &[Vec<f64>], targets: &[f64], alpha: f64) -> Result<Self> {
        let dims = check_data(features, targets, 2)?;
        let n = features.len() as f64;
        let mean: Vec<f64> = (0..dims).map(|j| features.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let scale: Vec<f64> = (0..dims)
            .map(|j| {
                let v = features.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
                if v > 0.0 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let ym = targets.iter().sum::<f64>() / n;
        let z: Vec<Vec<f64>> =
            features.iter().map(|r| r.iter().enumerate().map(|(j, v)| (v - mean[j]) / scale[j]).collect()).collect();
        // Normal equations (ZᵀZ + λI) w = Zᵀ(y - ȳ); a tiny floor keeps a rank-deficient OLS
        // solvable (it then picks the minimum-norm-like solution).
        let lambda = alpha.max(1e-9 * n);
        let mut a = vec![vec![0.0; dims + 1]; dims];
        for (row, &y) in z.iter().zip(targets) {
            for i in 0..dims {
                for j in 0..dims {
                    a[i][j] += row[i] * row[j];
                }
                a[i][dims] += row[i] * (y - ym);
            }
        }
        for (i, r) in a.iter_mut().enumerate() {
            r[i] += lambda;
        }
        let w = solve(a)?;
        let weights: Vec<f64> = w.iter().zip(&scale).map(|(w, s)| w / s).collect();
        let bias = ym - weights.iter().zip(&mean).map(|(w, m)| w * m).sum::<f64>();
        Ok(Self { weights, bias })
    }

    /// The model's value at `x`.
    pub fn eval(&self, x: &[f64]) -> Result<f64> {
        check_dims(self.weights.len(), x)?;
        Ok(self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
    }
}

/// Solves the augmented system `[A | b]` by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // row and column indices are the algorithm
fn solve(mut a: Vec<Vec<f64>>) -> Result<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        if a[pivot][col].abs() < 1e-300 {
            return Err(SdkError::Config("the fit's normal equations are singular".into()));
        }
        a.swap(col, pivot);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for c in col..=n {
                a[r][c] -= f * a[col][c];
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (a[r][n] - s) / a[r][r];
    }
    Ok(x)
}

/// Ordinary least squares with an intercept (the paper's predictor).
#[derive(Default)]
pub struct Linear {
    model: Option<LinearModel>,
}

impl Predictor for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn fit(&mut self, features: &[Vec<f64>], targets: &[f64]) -> Result<()> {
        self.model = Some(LinearModel::fit(features, targets, 0.0)?);
        Ok(())
    }

    fn predict(&self, features: &[f64]) -> Result<f64> {
        self.model.as_ref().ok_or_else(|| unfitted("linear"))?.eval(features)
    }

    fn to_json(&self) -> serde_json::Value {
        self.model.as_ref().map_or(serde_json::Value::Null, |m| {
            serde_json::to_value(State::Linear(m.clone())).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// Ridge regression; the penalty is chosen from a log grid by k-fold cross-validation.
#[derive(Default)]
pub struct Ridge {
    alpha: Option<f64>,
    model: Option<LinearModel>,
}

/// The penalties `ridge` chooses from (on standardised features).
pub const RIDGE_ALPHAS: [f64; 9] = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0];

impl Ridge {
    /// The penalty chosen by the last fit.
    pub fn alpha(&self) -> Option<f64> {
        self.alpha
    }
}

impl Predictor for Ridge {
    fn name(&self) -> &str {
        "ridge"
    }

    fn fit(&mut self, features: &[Vec<f64>], targets: &[f64]) -> Result<()> {
        check_data(features, targets, 3)?;
        let folds = features.len().min(5);
        let mut best = (f64::INFINITY, RIDGE_ALPHAS[0]);
        for &alpha in &RIDGE_ALPHAS {
            let predicted = out_of_fold(features, targets, folds, |x, y| {
                let m = LinearModel::fit(x, y, alpha)?;
                Ok(move |f: &[f64]| m.eval(f))
            })?;
            let err = crate::stats::mse(&predicted, targets);
            if err < best.0 {
                best = (err, alpha);
            }
        }
        self.alpha = Some(best.1);
        self.model = Some(LinearModel::fit(features, targets, best.1)?);
        Ok(())
    }

    fn predict(&self, features: &[f64]) -> Result<f64> {
        self.model.as_ref().ok_or_else(|| unfitted("ridge"))?.eval(features)
    }

    fn to_json(&self) -> serde_json::Value {
        match (&self.model, self.alpha) {
            (Some(m), Some(alpha)) => {
                serde_json::to_value(State::Ridge { alpha, model: m.clone() }).unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }
}

/// One node of a regression tree: a split, or a leaf when `feature` is `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Feature tested, or `None` for a leaf.
    pub feature: Option<usize>,
    /// Go left when `x[feature] <= threshold`.
    pub threshold: f64,
    /// Child indices (split) in the tree's node list.
    pub children: [usize; 2],
    /// Leaf value.
    pub value: f64,
}

/// A fitted boosted ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbtModel {
    /// Number of features.
    pub dims: usize,
    /// Starting value (the mean target).
    pub base: f64,
    /// Shrinkage applied to every tree.
    pub learning_rate: f64,
    /// The trees, each a node list with the root first.
    pub trees: Vec<Vec<TreeNode>>,
}

impl GbtModel {
    fn eval(&self, x: &[f64]) -> Result<f64> {
        check_dims(self.dims, x)?;
        let mut y = self.base;
        for tree in &self.trees {
            let mut node = &tree[0];
            while let Some(f) = node.feature {
                node = &tree[node.children[usize::from(x[f] > node.threshold)]];
            }
            y += self.learning_rate * node.value;
        }
        Ok(y)
    }
}

/// Gradient-boosted regression trees (squared loss, depth 2, shrinkage 0.1).
pub struct Gbt {
    /// Boosting rounds.
    pub rounds: usize,
    /// Tree depth.
    pub depth: usize,
    /// Shrinkage.
    pub learning_rate: f64,
    /// Fewest samples in a leaf.
    pub min_leaf: usize,
    model: Option<GbtModel>,
}

impl Default for Gbt {
    fn default() -> Self {
        Self { rounds: 100, depth: 2, learning_rate: 0.1, min_leaf: 2, model: None }
    }
}

impl Gbt {
    #[allow(clippy::needless_range_loop)] // `f` indexes a feature of every sample
    fn grow(&self, x: &[Vec<f64>], r: &[f64], idx: Vec<usize>, depth: usize, nodes: &mut Vec<TreeNode>) -> usize {
        let mean = idx.iter().map(|&i| r[i]).sum::<f64>() / idx.len().max(1) as f64;
        let me = nodes.len();
        nodes.push(TreeNode { feature: None, threshold: 0.0, children: [0, 0], value: mean });
        if depth == 0 || idx.len() < 2 * self.min_leaf {
            return me;
        }
        // The split that most reduces the squared error, over midpoints between distinct values.
        let mut best: Option<(f64, usize, f64)> = None;
        let total: f64 = idx.iter().map(|&i| r[i]).sum();
        for f in 0..x[0].len() {
            let mut sorted = idx.clone();
            sorted.sort_by(|&a, &b| x[a][f].total_cmp(&x[b][f]));
            let mut left = 0.0;
            for k in 0..sorted.len() - 1 {
                left += r[sorted[k]];
                let (nl, nr) = ((k + 1) as f64, (sorted.len() - k - 1) as f64);
                if k + 1 < self.min_leaf || sorted.len() - k - 1 < self.min_leaf {
                    continue;
                }
                let (a, b) = (x[sorted[k]][f], x[sorted[k + 1]][f]);
                if a == b {
                    continue;
                }
                let gain = left * left / nl + (total - left).powi(2) / nr;
                if best.is_none_or(|(g, _, _)| gain > g + 1e-12) {
                    best = Some((gain, f, (a + b) / 2.0));
                }
            }
        }
        let Some((_, f, t)) = best else { return me };
        let (l, rr): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|&i| x[i][f] <= t);
        let left = self.grow(x, r, l, depth - 1, nodes);
        let right = self.grow(x, r, rr, depth - 1, nodes);
        nodes[me] = TreeNode { feature: Some(f), threshold: t, children: [left, right], value: mean };
        me
    }
}

impl Predictor for Gbt {
    fn name(&self) -> &str {
        "gbt"
    }

    fn fit(&mut self, features: &[Vec<f64>], targets: &[f64]) -> Result<()> {
        let dims = check_data(features, targets, 2)?;
        let base = targets.iter().sum::<f64>() / targets.len() as f64;
        let mut model = GbtModel { dims, base, learning_rate: self.learning_rate, trees: Vec::new() };
        let mut current = vec![base; targets.len()];
        for _ in 0..self.rounds {
            let residual: Vec<f64> = targets.iter().zip(&current).map(|(t, c)| t - c).collect();
            let mut nodes = Vec::new();
            self.grow(features, &residual, (0..targets.len()).collect(), self.depth, &mut nodes);
            let tree_model = GbtModel { dims, base: 0.0, learning_rate: self.learning_rate, trees: vec![nodes] };
            for (c, x) in current.iter_mut().zip(features) {
                *c += tree_model.eval(x)?;
            }
            model.trees.extend(tree_model.trees);
        }
        self.model = Some(model);
        Ok(())
    }

    fn predict(&self, features: &[f64]) -> Result<f64> {
        self.model.as_ref().ok_or_else(|| unfitted("gbt"))?.eval(features)
    }

    fn to_json(&self) -> serde_json::Value {
        self.model.as_ref().map_or(serde_json::Value::Null, |m| {
            serde_json::to_value(State::Gbt(m.clone())).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// Out-of-fold predictions: sample `i` is predicted by a model fitted on every fold but
/// `i % folds` (deterministic folds; `folds == n` is leave-one-out).
pub fn out_of_fold<F, M>(features: &[Vec<f64>], targets: &[f64], folds: usize, fit: F) -> Result<Vec<f64>>
where
    F: Fn(&[Vec<f64>], &[f64]) -> Result<M>,
    M: Fn(&[f64]) -> Result<f64>,
{
    let n = features.len();
    let folds = folds.clamp(2, n.max(2));
    let mut out = vec![0.0; n];
    for k in 0..folds {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in (0..n).filter(|i| i % folds != k) {
            x.push(features[i].clone());
            y.push(targets[i]);
        }
        let model = fit(&x, &y)?;
        for i in (0..n).filter(|i| i % folds == k) {
            out[i] = model(&features[i])?;
        }
    }
    Ok(out)
}

/// Out-of-fold predictions of the built-in predictor `name` (see [`out_of_fold`]).
pub fn cross_validate(name: &str, features: &[Vec<f64>], targets: &[f64], folds: usize) -> Result<Vec<f64>> {
    out_of_fold(features, targets, folds, |x, y| {
        let mut p = new_predictor(name)?;
        p.fit(x, y)?;
        Ok(move |f: &[f64]| p.predict(f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fitted(name: &str, x: &[Vec<f64>], y: &[f64]) -> Box<dyn Predictor> {
        let mut p = new_predictor(name).unwrap();
        p.fit(x, y).unwrap();
        p
    }

    #[test]
    fn least_squares_matches_the_hand_solution() {
        // Points (0,1), (1,3), (2,4), (3,8): slope = Sxy/Sxx = 11/5 = 2.2,
        // intercept = 4 - 2.2 * 1.5 = 0.7.
        let x = vec![vec![0.0], vec![1.0], vec![2.0], vec![3.0]];
        let y = [1.0, 3.0, 4.0, 8.0];
        let m = LinearModel::fit(&x, &y, 0.0).unwrap();
        assert!((m.weights[0] - 2.2).abs() < 1e-6 && (m.bias - 0.7).abs() < 1e-6, "{m:?}");
        // An exact two-feature plane is recovered.
        let x: Vec<Vec<f64>> = (0..6).map(|i| vec![i as f64, ((i * i) % 5) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| 1.5 - 2.0 * r[0] + 0.5 * r[1]).collect();
        let p = fitted("linear", &x, &y);
        assert!((p.predict(&[10.0, 1.0]).unwrap() - (1.5 - 20.0 + 0.5)).abs() < 1e-6);
    }

    #[test]
    fn ridge_shrinks_toward_the_mean_and_chooses_its_penalty() {
        // With alpha on standardised x: slope_std = Sxy_std / (Sxx_std + alpha).
        // x = (0,1,2,3): mean 1.5, population std s = sqrt(1.25); Sxx_std = 4, Sxy_std = 11/s,
        // so with alpha 4 the raw slope is (11/s) / (4+4) / s = 1.1 (OLS gives 2.2).
        let x = vec![vec![0.0], vec![1.0], vec![2.0], vec![3.0]];
        let y = [1.0, 3.0, 4.0, 8.0];
        let m = LinearModel::fit(&x, &y, 4.0).unwrap();
        let expected = 1.1;
        assert!((m.weights[0] - expected).abs() < 1e-9, "{} vs {expected}", m.weights[0]);
        let mut r = Ridge::default();
        r.fit(&x, &y).unwrap();
        assert!(RIDGE_ALPHAS.contains(&r.alpha().unwrap()));
    }

    #[test]
    fn boosted_trees_fit_a_step_that_a_line_cannot() {
        let x: Vec<Vec<f64>> = (0..12).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..12).map(|i| if i < 6 { 0.0 } else { 1.0 }).collect();
        let p = fitted("gbt", &x, &y);
        assert!(p.predict(&[2.0]).unwrap() < 0.05 && p.predict(&[9.0]).unwrap() > 0.95);
    }

    #[test]
    fn every_predictor_survives_a_json_round_trip() {
        let x: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64, (i % 3) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| r[0] * 0.3 - r[1]).collect();
        for name in PREDICTORS {
            let p = fitted(name, &x, &y);
            let back = from_json(&p.to_json()).unwrap();
            assert_eq!(back.name(), name);
            assert_eq!(back.predict(&[3.5, 1.0]).unwrap(), p.predict(&[3.5, 1.0]).unwrap());
            assert!(back.predict(&[1.0]).unwrap_err().to_string().contains("2 features"));
        }
        assert!(from_json(&serde_json::json!({"kind": "forest"})).is_err());
        assert!(new_predictor("forest").err().unwrap().to_string().contains("linear, ridge, gbt"));
    }

    #[test]
    fn leave_one_out_predicts_each_point_without_it() {
        // On a line every leave-one-out prediction of least squares is exact.
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..5).map(|i| 2.0 * i as f64 + 1.0).collect();
        let p = cross_validate("linear", &x, &y, 5).unwrap();
        assert!(p.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-6), "{p:?}");
        // A constant model's LOO prediction is the mean of the others.
        let q = out_of_fold(&x, &y, 5, |_, yy| {
            let m = yy.iter().sum::<f64>() / yy.len() as f64;
            Ok(move |_: &[f64]| Ok(m))
        })
        .unwrap();
        assert!((q[0] - (3.0 + 5.0 + 7.0 + 9.0) / 4.0).abs() < 1e-12);
    }
}
