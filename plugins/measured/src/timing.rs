//! Timing workloads so that repeated measurements agree.
//!
//! One run of a small network takes a millisecond or two, so a scheduler hiccup or a compiler
//! on the other core can move a plain median of 20 runs by tens of percent (1.69 to 2.55 ms for
//! one network in three runs of `donna cost` on a busy machine). Here timed runs
//! come in *rounds*: a round is `repeats` runs (or more, so it lasts at least a few
//! milliseconds) and gives its median. Rounds go on until the two fastest round medians agree
//! within `tolerance`, i.e. two separate stretches of time saw the same undisturbed speed, or
//! until `max_rounds`. The latency is the fastest round median: a disturbance only ever slows a
//! round down, so the quietest round is the reproducible figure.
//!
//! The first workload of a call first runs for 100 ms untimed, so that thread pools are up and
//! the CPU has left its idle clock before the first round; each workload then gets `warmup`
//! runs of its own. Several workloads (one search generation) are timed *interleaved*: round
//! `r` of every workload before round `r + 1` of any, so a slow minute hurts all of them alike
//! instead of whichever network happened to be running.

use std::time::{Duration, Instant};

use donna_sdk::cost::Latency;

/// How measurements are taken.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureConfig {
    /// libtorch intra-op threads.
    pub threads: i32,
    /// Untimed runs before the first round (and one more before each later round).
    pub warmup: usize,
    /// Timed runs per round (more when a run is so short that the round would last < 5 ms).
    pub repeats: usize,
    /// Rounds at least.
    pub rounds: usize,
    /// Rounds at most, when the fastest two keep disagreeing.
    pub max_rounds: usize,
    /// How far apart (relative) the two fastest round medians may be to stop.
    pub tolerance: f64,
}

/// The shortest a round may last: shorter ones are too easily disturbed as a whole.
const MIN_ROUND: Duration = Duration::from_millis(5);

/// How long the first workload of a call runs before anything is timed: thread pools start and
/// the CPU leaves its idle clock in this time, which a few runs of a small network do not span.
const SPIN_UP: Duration = Duration::from_millis(100);

impl MeasureConfig {
    /// The settings `--device cpu` uses, with `threads` libtorch threads.
    pub fn with_threads(threads: i32) -> Self {
        Self { threads, warmup: 5, repeats: 10, rounds: 3, max_rounds: 12, tolerance: 0.02 }
    }

    /// Parses `threads=N,warmup=W,repeats=R,rounds=M,max_rounds=X,tolerance=PERCENT` (all
    /// optional) over the defaults.
    pub fn parse(args: &str) -> donna_sdk::Result<Self> {
        use donna_sdk::SdkError::Config;
        let mut c = Self::with_threads(tch::get_num_threads());
        for part in args.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Config(format!("`{part}` is not key=value (threads, warmup, repeats, rounds, max_rounds, tolerance)"))
            })?;
            if k == "tolerance" {
                match v.parse::<f64>() {
                    Ok(p) if (0.0..=100.0).contains(&p) => c.tolerance = p / 100.0,
                    _ => return Err(Config(format!("tolerance={v} is not a percentage in 0..=100"))),
                }
                continue;
            }
            let n: usize = v.parse().map_err(|_| Config(format!("{k}={v} is not a positive integer")))?;
            match (k, n) {
                (_, 0) if k != "warmup" => return Err(Config(format!("{k} must be at least 1"))),
                ("threads", n) if n <= 256 => c.threads = n as i32,
                ("warmup", n) if n <= 10_000 => c.warmup = n,
                ("repeats", n) if n <= 10_000 => c.repeats = n,
                ("rounds", n) if n <= 1_000 => c.rounds = n,
                ("max_rounds", n) if n <= 1_000 => c.max_rounds = n,
                _ => {
                    return Err(Config(format!(
                        "unknown or out-of-range setting `{part}` (threads<=256, warmup, repeats<=10000, rounds, max_rounds<=1000, tolerance)"
                    )))
                }
            }
        }
        c.max_rounds = c.max_rounds.max(c.rounds);
        Ok(c)
    }
}

/// The round medians of one workload so far.
#[derive(Clone, Debug, Default)]
struct Rounds {
    medians: Vec<f64>,
    runs: Vec<f64>,
    runs_per_round: usize,
}

impl Rounds {
    fn sorted_medians(&self) -> Vec<f64> {
        let mut m = self.medians.clone();
        m.sort_by(f64::total_cmp);
        m
    }

    fn settled(&self, c: &MeasureConfig) -> bool {
        let m = self.sorted_medians();
        m.len() >= c.max_rounds || (m.len() >= c.rounds.max(2) && m[1] <= m[0] * (1.0 + c.tolerance))
    }

    fn latency(&self) -> Option<Latency> {
        let best = *self.sorted_medians().first()?;
        let n = self.runs.len() as f64;
        let mean = self.runs.iter().sum::<f64>() / n;
        let sd = (self.runs.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
        Some(Latency { ms: best, cv: Some(sd / mean) })
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    }
}

fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Times every workload in interleaved rounds (see the module doc). Each workload runs the
/// thing to time once, including whatever synchronisation the device needs. A workload gets
/// `None` when the deadline passed before its first round.
pub fn time_interleaved(
    config: &MeasureConfig,
    workloads: &mut [&mut dyn FnMut()],
    deadline: Option<Instant>,
) -> Vec<Option<Latency>> {
    let late = || deadline.is_some_and(|d| Instant::now() >= d);
    let mut rounds = vec![Rounds::default(); workloads.len()];
    if let Some(first) = workloads.first_mut() {
        let t = Instant::now();
        while t.elapsed() < SPIN_UP && !late() {
            first();
        }
    }
    for (w, r) in workloads.iter_mut().zip(&mut rounds) {
        if late() {
            break;
        }
        for _ in 0..config.warmup {
            w();
        }
        // Size the rounds: at least `repeats` runs, and at least MIN_ROUND long.
        let t = Instant::now();
        w();
        let one = elapsed_ms(t).max(1e-3);
        r.runs_per_round = config.repeats.max((MIN_ROUND.as_secs_f64() * 1e3 / one).ceil() as usize).min(10_000);
    }
    for _ in 0..config.max_rounds {
        let mut busy = false;
        for (w, r) in workloads.iter_mut().zip(&mut rounds) {
            if r.runs_per_round == 0 || r.settled(config) {
                continue;
            }
            if late() {
                return rounds.iter().map(Rounds::latency).collect();
            }
            busy = true;
            // Another workload ran since: bring this one's weights back into the caches.
            w();
            let mut times = Vec::with_capacity(r.runs_per_round);
            for _ in 0..r.runs_per_round {
                let t = Instant::now();
                w();
                times.push(elapsed_ms(t));
            }
            r.runs.extend_from_slice(&times);
            r.medians.push(median(times));
        }
        if !busy {
            break;
        }
    }
    rounds.iter().map(Rounds::latency).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_bad_ones_are_refused() {
        let c = MeasureConfig::parse("threads=2,rounds=4,tolerance=1.5").unwrap();
        assert_eq!((c.threads, c.rounds, c.repeats, c.warmup), (2, 4, 10, 5));
        assert!((c.tolerance - 0.015).abs() < 1e-12);
        assert_eq!(MeasureConfig::parse("rounds=20").unwrap().max_rounds, 20, "max_rounds follows rounds");
        assert!(MeasureConfig::parse("threads=0").is_err());
        assert!(MeasureConfig::parse("repeats=x").unwrap_err().to_string().contains("repeats=x"));
        assert!(MeasureConfig::parse("speed=3").unwrap_err().to_string().contains("speed=3"));
        assert!(MeasureConfig::parse("tolerance=-1").is_err());
        assert_eq!(MeasureConfig::parse("warmup=0,repeats=3").unwrap().repeats, 3);
    }

    #[test]
    fn a_disturbed_round_does_not_move_the_latency_and_rounds_stop_once_two_agree() {
        let config = MeasureConfig { threads: 1, warmup: 0, repeats: 3, rounds: 2, max_rounds: 8, tolerance: 0.05 };
        let mut r = Rounds::default();
        r.medians.push(1.00);
        r.runs.extend([1.0, 1.0, 1.0]);
        assert!(!r.settled(&config), "one round is not enough");
        r.medians.push(3.00);
        r.runs.extend([3.0, 3.0, 3.0]);
        assert!(!r.settled(&config), "the two rounds disagree");
        r.medians.push(1.04);
        r.runs.extend([1.04, 1.04, 1.04]);
        assert!(r.settled(&config), "rounds 1 and 3 agree within 5%");
        assert_eq!(r.latency().unwrap().ms, 1.00, "the fastest round, not the disturbed one");
        let mut apart = Rounds { medians: (1..=7).map(f64::from).collect(), ..Rounds::default() };
        assert!(!apart.settled(&config));
        apart.medians.push(8.0);
        assert!(apart.settled(&config), "max_rounds ends a measurement whose rounds never agree");
    }

    #[test]
    fn interleaved_workloads_each_get_their_own_latency() {
        let config = MeasureConfig::with_threads(1);
        let (mut fast, mut slow) = (0usize, 0usize);
        let mut a = || {
            fast += 1;
            std::thread::sleep(Duration::from_micros(200));
        };
        let mut b = || {
            slow += 1;
            std::thread::sleep(Duration::from_micros(2000));
        };
        let lat = time_interleaved(&config, &mut [&mut a, &mut b], None);
        let (a, b) = (lat[0].unwrap().ms, lat[1].unwrap().ms);
        assert!(a < b && a >= 0.2 && b >= 2.0, "{a} {b}");
        assert!(fast > slow, "the fast workload ran more often per round: {fast} vs {slow}");
    }

    #[test]
    fn a_past_deadline_measures_nothing() {
        let config = MeasureConfig::with_threads(1);
        let mut w = || {};
        let lat = time_interleaved(&config, &mut [&mut w], Some(Instant::now()));
        assert_eq!(lat, vec![None]);
    }
}
