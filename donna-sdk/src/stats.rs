//! Rank correlation and error measures for judging predictors (and cost models).
//!
//! Kendall's tau is the paper's figure of merit for an accuracy predictor: the fraction of
//! architecture pairs it orders correctly, rescaled to [-1, 1]. Ties are handled as in tau-b.

/// Kendall's tau-b of two equally long series (0 when either is constant or shorter than 2).
pub fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "kendall_tau: series of different lengths");
    let (mut concordant, mut discordant, mut ties_x, mut ties_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = x[i] - x[j];
            let dy = y[i] - y[j];
            match (dx == 0.0, dy == 0.0) {
                (true, true) => {}
                (true, false) => ties_x += 1,
                (false, true) => ties_y += 1,
                (false, false) if (dx > 0.0) == (dy > 0.0) => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let n1 = (concordant + discordant + ties_x) as f64;
    let n2 = (concordant + discordant + ties_y) as f64;
    if n1 == 0.0 || n2 == 0.0 {
        return 0.0;
    }
    (concordant - discordant) as f64 / (n1 * n2).sqrt()
}

/// Ranks from 1, ties sharing the average of their ranks.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation (0 when either series is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: series of different lengths");
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's rank correlation: Pearson's on average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Mean squared error.
pub fn mse(predicted: &[f64], measured: &[f64]) -> f64 {
    assert_eq!(predicted.len(), measured.len(), "mse: series of different lengths");
    if predicted.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(measured).map(|(p, m)| (p - m) * (p - m)).sum::<f64>() / predicted.len() as f64
}

/// Mean absolute percentage error of `estimated` against `reference` (in percent).
pub fn mape(estimated: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(estimated.len(), reference.len(), "mape: series of different lengths");
    if estimated.is_empty() {
        return 0.0;
    }
    100.0 * estimated.iter().zip(reference).map(|(e, r)| ((e - r) / r).abs()).sum::<f64>() / estimated.len() as f64
}

/// Kendall tau, Spearman and MSE of predictions against measurements.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    /// Kendall's tau-b.
    pub kendall_tau: f64,
    /// Spearman's rho.
    pub spearman: f64,
    /// Mean squared error (in the targets' unit squared); `None` for a ranking score that is
    /// not in the targets' unit.
    pub mse: Option<f64>,
    /// Number of points.
    pub n: usize,
}

impl Agreement {
    /// The agreement of `predicted` with `measured`.
    pub fn of(predicted: &[f64], measured: &[f64]) -> Self {
        Self {
            kendall_tau: kendall_tau(predicted, measured),
            spearman: spearman(predicted, measured),
            mse: Some(mse(predicted, measured)),
            n: predicted.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_matches_hand_counts() {
        // Pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> (5-1)/6.
        assert!((kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // With a tie in x: x=(1,1,2), y=(1,2,3): pairs (0,1) tie in x, (0,2) and (1,2) concordant.
        // tau-b = 2 / sqrt((2+0+1) * (2+0+0)) = 2 / sqrt(6).
        assert!((kendall_tau(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert_eq!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn spearman_uses_average_ranks() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
        // Ranks (1,2,3,4) vs (1,3,2,4): d² = 0+1+1+0 = 2, rho = 1 - 6*2/(4*15) = 0.8.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[5.0, 7.0, 6.0, 9.0]) - 0.8).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[1.0, 4.0, 9.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn errors_match_hand_computation() {
        assert!((mse(&[1.0, 2.0, 4.0], &[1.0, 3.0, 2.0]) - 5.0 / 3.0).abs() < 1e-12);
        assert!((mape(&[110.0, 90.0], &[100.0, 100.0]) - 10.0).abs() < 1e-12);
        let a = Agreement::of(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!((a.kendall_tau, a.spearman, a.mse, a.n), (1.0, 1.0, Some(0.0), 3));
    }
}
