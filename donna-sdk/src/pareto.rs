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

/// The area dominated by the feasible points of two minimised objectives, bounded by
/// `reference` (points not better than it in both objectives add nothing).
pub fn hypervolume_2d(points: &[Evaluation], reference: [f64; 2]) -> f64 {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.violation <= 0.0 && p.objectives.len() >= 2)
        .map(|p| (p.objectives[0], p.objectives[1]))
        .filter(|&(x, y)| x < reference[0] && y < reference[1])
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let (mut area, mut best_y) = (0.0, reference[1]);
    for (i, &(x, y)) in pts.iter().enumerate() {
        if y >= best_y {
            continue;
        }
        // The slab from this point's x to the next better point's x (or the reference).
        let next_x = pts[i + 1..].iter().find(|p| p.1 < y).map_or(reference[0], |p| p.0);
        area += (next_x - x) * (reference[1] - y);
        best_y = y;
    }
    area
}

/// Non-dominated sorting (Deb et al. 2002): the fronts in order, each a list of indices in
/// increasing order. Two objectives take an O(n log n) sweep; more take the general O(m n²).
pub fn fronts(points: &[Evaluation]) -> Vec<Vec<usize>> {
    if points.iter().all(|p| p.objectives.len() == 2) {
        return fronts_2d(points);
    }
    fronts_general(points)
}

/// The 2-objective sweep: feasible points sorted by (f1, f2) join the first front whose last
/// point does not dominate them; infeasible points follow, one front per violation level.
fn fronts_2d(points: &[Evaluation]) -> Vec<Vec<usize>> {
    let (mut feasible, mut infeasible): (Vec<usize>, Vec<usize>) =
        (0..points.len()).partition(|&i| points[i].violation <= 0.0);
    let o = |i: usize| (points[i].objectives[0], points[i].objectives[1]);
    feasible.sort_by(|&a, &b| o(a).0.total_cmp(&o(b).0).then(o(a).1.total_cmp(&o(b).1)).then(a.cmp(&b)));
    // Per front: the last point's (f1, f2); f2 of a front's last point is its minimum.
    let mut tails: Vec<(f64, f64)> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in &feasible {
        let (x, y) = o(i);
        // A front's tails grow in f2 with the front index, so the first front that takes the
        // point is found by binary search.
        let k = tails.partition_point(|&(tx, ty)| ty < y || (ty == y && tx < x));
        if k == tails.len() {
            tails.push((x, y));
            out.push(vec![i]);
        } else {
            tails[k] = (x, y);
            out[k].push(i);
        }
    }
    infeasible.sort_by(|&a, &b| points[a].violation.total_cmp(&points[b].violation).then(a.cmp(&b)));
    let mut last: Option<f64> = None;
    for i in infeasible {
        if last == Some(points[i].violation) {
            out.last_mut().expect("a front exists").push(i);
        } else {
            out.push(vec![i]);
            last = Some(points[i].violation);
        }
    }
    for f in &mut out {
        f.sort_unstable();
    }
    out
}

fn fronts_general(points: &[Evaluation]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by[i] += 1;
            }
        }
    }
    let mut out = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut current, next));
    }
    out
}

/// Crowding distance of each member of one front (infinite at the ends of every objective).
pub fn crowding(points: &[Evaluation], front: &[usize]) -> Vec<f64> {
    let mut d = vec![0.0; front.len()];
    let m = front.first().map_or(0, |&i| points[i].objectives.len());
    for k in 0..m {
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| points[front[a]].objectives[k].total_cmp(&points[front[b]].objectives[k]));
        let (lo, hi) = (points[front[order[0]]].objectives[k], points[front[order[order.len() - 1]]].objectives[k]);
        d[order[0]] = f64::INFINITY;
        d[order[order.len() - 1]] = f64::INFINITY;
        if hi > lo {
            for w in 1..order.len().saturating_sub(1) {
                let gap = points[front[order[w + 1]]].objectives[k] - points[front[order[w - 1]]].objectives[k];
                d[order[w]] += gap / (hi - lo);
            }
        }
    }
    d
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

    #[test]
    fn hypervolume_matches_hand_computation() {
        // Points (1,3), (2,2), (3,1) with reference (4,4): 3*1 + 2*1 + 1*1 ... by slabs:
        // x in [1,2): height 4-3 = 1; [2,3): 4-2 = 2; [3,4): 4-1 = 3 -> 6.
        let pts = [e(&[1.0, 3.0], 0.0), e(&[2.0, 2.0], 0.0), e(&[3.0, 1.0], 0.0), e(&[3.5, 3.5], 0.0)];
        assert!((hypervolume_2d(&pts, [4.0, 4.0]) - 6.0).abs() < 1e-12);
        // Infeasible points and points beyond the reference add nothing.
        let more = [e(&[0.0, 0.0], 1.0), e(&[5.0, 0.0], 0.0)];
        let all: Vec<_> = pts.iter().chain(&more).cloned().collect();
        assert!((hypervolume_2d(&all, [4.0, 4.0]) - 6.0).abs() < 1e-12);
        assert_eq!(hypervolume_2d(&[], [1.0, 1.0]), 0.0);
    }

    #[test]
    fn the_2d_sweep_agrees_with_the_general_sort() {
        let mut rng = crate::rng::SplitMix64::new(9);
        for round in 0..50 {
            // Coarse values make ties and duplicates common; some points are infeasible.
            let pts: Vec<Evaluation> = (0..40)
                .map(|_| {
                    let v = if round % 3 == 0 && rng.unit() < 0.2 { (rng.below(3) + 1) as f64 } else { 0.0 };
                    e(&[rng.below(6) as f64, rng.below(6) as f64], v)
                })
                .collect();
            assert_eq!(fronts_2d(&pts), fronts_general(&pts), "round {round}");
        }
    }

    #[test]
    fn fronts_and_crowding_follow_nsga2() {
        let pts =
            [e(&[1.0, 4.0], 0.0), e(&[2.0, 2.0], 0.0), e(&[4.0, 1.0], 0.0), e(&[3.0, 3.0], 0.0), e(&[4.0, 4.0], 0.0)];
        assert_eq!(fronts(&pts), vec![vec![0, 1, 2], vec![3], vec![4]]);
        // Middle point: (4-1)/(4-1) + (4-1)/(4-1) = 2; ends infinite.
        let c = crowding(&pts, &[0, 1, 2]);
        assert_eq!((c[0], c[1], c[2]), (f64::INFINITY, 2.0, f64::INFINITY));
    }
}
