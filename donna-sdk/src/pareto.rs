//! Pareto dominance over minimised objectives, with constraint violations (Deb's rule): a
//! feasible point dominates an infeasible one, and of two infeasible points the one with the
//! smaller violation dominates.

use crate::searcher::Evaluation;

/// Whether `a` dominates `b` (all objectives minimised).
pub fn dominates(a: &Evaluation, b: &Evaluation) -> bool {
    if a.violation > 0.0 || b.violation > 0.0 {
        return a.violation < b.violation;
    }
    let mut strictly = false;
    for (x, y) in a.objectives.iter().zip(&b.objectives) {
        if x > y {
            return false;
        }
        strictly |= x < y;
    }
    strictly
}

/// Indices of the points no other point dominates, in input order.
pub fn non_dominated(points: &[Evaluation]) -> Vec<usize> {
    (0..points.len()).filter(|&i| !points.iter().any(|p| dominates(p, &points[i]))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(objectives: &[f64], violation: f64) -> Evaluation {
        Evaluation { objectives: objectives.to_vec(), violation }
    }

    #[test]
    fn the_front_is_what_nothing_dominates() {
        let pts =
            [e(&[1.0, 5.0], 0.0), e(&[2.0, 2.0], 0.0), e(&[3.0, 3.0], 0.0), e(&[5.0, 1.0], 0.0), e(&[2.0, 2.0], 0.0)];
        // (3,3) is dominated by (2,2); equal points do not dominate each other.
        assert_eq!(non_dominated(&pts), vec![0, 1, 3, 4]);
    }

    #[test]
    fn feasible_points_dominate_infeasible_ones() {
        let pts = [e(&[9.0, 9.0], 0.0), e(&[0.0, 0.0], 0.5), e(&[0.0, 0.0], 0.1)];
        assert!(dominates(&pts[0], &pts[1]));
        assert!(dominates(&pts[2], &pts[1]));
        assert_eq!(non_dominated(&pts), vec![0]);
    }
}
