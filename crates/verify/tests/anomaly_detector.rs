//! The kNN anomaly detector on generated series with known answers: a latency step is
//! flagged within a few points, stationary noise raises (almost) no episodes over thousands
//! of points, a daily pattern is learnt from past days, a persistent fault stays one episode.

use meshlens_verify::anomaly::{Detector, Direction, Options, Transition, THRESHOLD};

const STEP: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// xorshift64* and Box-Muller: reproducible noise without a dependency.
pub struct Rng(pub u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[derive(Default)]
struct Run {
    starts: Vec<(usize, i64)>,
    ends: Vec<(usize, i64)>,
    scored: usize,
}

/// Feeds `values` at `step` from `t0`; the indices and times of episode starts and ends.
fn feed(d: &mut Detector, t0: i64, step: i64, values: &[f64]) -> Run {
    let mut run = Run::default();
    for (i, v) in values.iter().enumerate() {
        let u = d.push(t0 + i as i64 * step, *v);
        if u.score.is_some() {
            run.scored += 1;
        }
        match u.transition {
            Some(Transition::Start(ep)) => run.starts.push((i, ep.declared)),
            Some(Transition::End(ep)) => run.ends.push((i, ep.end.unwrap())),
            None => {}
        }
    }
    run
}

fn noise(rng: &mut Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    (0..n).map(|_| mean + sd * rng.normal()).collect()
}

#[test]
fn latency_step_is_flagged_within_a_few_points() {
    let mut rng = Rng(7);
    let mut d = Detector::new(Options::default()).unwrap();
    let mut values = noise(&mut rng, 1000, 50.0, 3.0);
    let quiet = feed(&mut d, T0, STEP, &values);
    assert!(
        quiet.starts.is_empty(),
        "quiet part flagged at {:?}",
        quiet.starts
    );
    values = noise(&mut rng, 20, 80.0, 3.0);
    let after = feed(&mut d, T0 + 1000 * STEP, STEP, &values);
    let (i, _) = *after.starts.first().expect("the step was never flagged");
    assert!(i <= 3, "flagged only {} points after the step", i + 1);
    assert!(d.episode().is_some(), "a persistent step stays flagged");
}

#[test]
fn small_relative_changes_are_not_flagged() {
    // A 2 % wobble on a flat rate stays under the relative floor.
    let mut d = Detector::new(Options::default()).unwrap();
    let values: Vec<f64> = (0..600)
        .map(|i| 100.0 + if (i / 37) % 2 == 0 { 0.0 } else { 2.0 })
        .collect();
    let run = feed(&mut d, T0, STEP, &values);
    assert!(run.starts.is_empty(), "flagged {:?}", run.starts);
}

#[test]
fn stationary_noise_gives_almost_no_episodes() {
    // 4 series x 5000 points (about 83 h at 15 s): gaussian, heavy-tailed and count-like.
    let mut total = 0;
    let mut points = 0;
    for (seed, kind) in [(1, "normal"), (2, "normal"), (3, "laplace"), (4, "counts")] {
        let mut rng = Rng(seed);
        let values: Vec<f64> = (0..5000)
            .map(|_| match kind {
                "normal" => 200.0 + 10.0 * rng.normal(),
                "laplace" => {
                    let u = rng.uniform() - 0.5;
                    50.0 - 4.0 * u.signum() * (1.0 - 2.0 * u.abs()).ln()
                }
                _ => (20.0 + 20f64.sqrt() * rng.normal()).round().max(0.0),
            })
            .collect();
        let mut d = Detector::new(Options::default()).unwrap();
        let run = feed(&mut d, T0, STEP, &values);
        eprintln!(
            "{kind} (seed {seed}): {} episodes in {} scored points",
            run.starts.len(),
            run.scored
        );
        assert!(run.scored > 4900, "warm-up too long: {}", run.scored);
        total += run.starts.len();
        points += run.scored;
    }
    let per_hour = total as f64 / (points as f64 * STEP as f64 / 3_600_000.0);
    eprintln!("false episodes: {total} in {points} points = {per_hour:.3}/h at 15 s");
    assert!(per_hour < 0.1, "{per_hour:.3} false episodes per hour");
}

#[test]
fn a_daily_pattern_is_learnt_from_past_days() {
    // One point a minute; every day 12:00-12:30 the rate triples.
    let minute = 60_000;
    let day0 = 1_700_006_400_000; // a UTC midnight
    let mut rng = Rng(11);
    let values: Vec<f64> = (0..4 * 1440)
        .map(|i| {
            let m = i % 1440;
            let level = if (720..750).contains(&m) { 30.0 } else { 10.0 };
            level + rng.normal()
        })
        .collect();
    let opts = Options {
        capacity: 180,
        ..Options::default()
    };
    let mut seasonal = Detector::new(opts.clone()).unwrap();
    let with = feed(&mut seasonal, day0, minute, &values);
    let mut plain = Detector::new(Options { days: 0, ..opts }).unwrap();
    let without = feed(&mut plain, day0, minute, &values);
    let on_day = |run: &Run, day: usize| run.starts.iter().filter(|(i, _)| i / 1440 == day).count();
    eprintln!("with past days: {:?}", with.starts);
    eprintln!("without: {:?}", without.starts);
    for day in 0..4 {
        assert!(
            on_day(&without, day) >= 1,
            "without seasonality day {day} is flagged"
        );
    }
    assert!(on_day(&with, 0) >= 1, "the first day is new");
    assert_eq!(on_day(&with, 2), 0, "seen on two past days: normal");
    assert_eq!(on_day(&with, 3), 0, "seen on three past days: normal");
    let (points, minutes) = seasonal.held();
    assert!(points <= 180 && minutes <= 8 * 1440, "{points} {minutes}");
}

#[test]
fn a_fault_is_one_episode_that_ends_after_recovery() {
    let mut rng = Rng(5);
    let mut d = Detector::new(Options::default()).unwrap();
    let mut v = noise(&mut rng, 400, 0.01, 0.003);
    v.extend(noise(&mut rng, 60, 0.2, 0.02)); // 15 minutes of 20 % errors
    v.extend(noise(&mut rng, 100, 0.01, 0.003));
    let run = feed(&mut d, T0, STEP, &v);
    assert_eq!(run.starts.len(), 1, "starts {:?}", run.starts);
    assert_eq!(run.ends.len(), 1, "ends {:?}", run.ends);
    let (start, _) = run.starts[0];
    let (end, end_ts) = run.ends[0];
    assert!((400..404).contains(&start), "declared at {start}");
    assert!((460..472).contains(&end), "ended at {end}");
    assert!(end_ts >= T0 + 460 * STEP);
}

#[test]
fn a_long_fault_becomes_the_new_normal() {
    let mut rng = Rng(9);
    let opts = Options {
        adapt_after: 40,
        ..Options::default()
    };
    let mut d = Detector::new(opts).unwrap();
    let mut v = noise(&mut rng, 300, 100.0, 5.0);
    v.extend(noise(&mut rng, 400, 300.0, 5.0));
    let run = feed(&mut d, T0, STEP, &v);
    assert!((300..304).contains(&run.starts[0].0), "{:?}", run.starts);
    // Adapted: the episode ends soon after `adapt_after` points. (Right after, the new level
    // has few neighbours, so a stray episode may follow; at most one here.)
    assert!(run.ends[0].0 < 300 + 50, "ended at {}", run.ends[0].0);
    assert!(run.starts.len() <= 2, "{:?}", run.starts);
    assert!(d.episode().is_none(), "still flagged at the end");
}

#[test]
fn warm_up_and_harmless_direction() {
    let mut rng = Rng(3);
    let opts = Options {
        direction: Direction::Increase,
        ..Options::default()
    };
    let mut d = Detector::new(opts.clone()).unwrap();
    let v = noise(&mut rng, 20, 50.0, 2.0);
    let run = feed(&mut d, T0, STEP, &v);
    assert_eq!(run.scored, 0, "no score during warm-up");
    let mut v = noise(&mut rng, 500, 50.0, 2.0);
    v.extend(noise(&mut rng, 30, 10.0, 2.0));
    let run = feed(&mut d, T0 + 20 * STEP, STEP, &v);
    assert!(run.starts.is_empty(), "a drop in latency is harmless");
    let (_, _, score) = d.last().unwrap();
    assert!(score.unwrap() < THRESHOLD);
    // Not finite or not newer: skipped.
    assert_eq!(d.push(T0, 1.0).score, None);
    assert_eq!(d.push(T0 + 10_000 * STEP, f64::NAN).score, None);
    assert!(Detector::new(Options {
        k: 0,
        ..Options::default()
    })
    .is_err());
}
