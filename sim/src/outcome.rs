//! The verdict on one seed: the anomalies the checker found against what the
//! scenario allows and requires, plus the liveness of the healed phase.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_jepsen::{Op, Report};

use crate::scenario::Scenario;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Each reason names what broke: an anomaly kind, a missing required
    /// anomaly, a liveness failure, a panic or a harness error.
    Fail(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub seed: u64,
    pub trace_hash: u64,
    pub trace_events: u64,
    /// The trace lines (only when the run kept them: replay --trace).
    pub trace: Vec<String>,
    pub history: Vec<Op>,
    pub report: Option<Report>,
    pub verdict: Verdict,
    /// Simulated milliseconds the run took.
    pub sim_ms: u64,
    /// Wall time the run took.
    pub wall: Duration,
    /// Sends acknowledged.
    pub acks: u64,
}

impl RunOutcome {
    /// A run that ended without a history to check.
    pub fn broken(seed: u64, reason: String, wall: Duration) -> RunOutcome {
        RunOutcome {
            seed,
            trace_hash: 0,
            trace_events: 0,
            trace: Vec::new(),
            history: Vec::new(),
            report: None,
            verdict: Verdict::Fail(vec![reason]),
            sim_ms: 0,
            wall,
            acks: 0,
        }
    }

    pub fn failed(&self) -> bool {
        self.verdict != Verdict::Pass
    }

    pub fn reasons(&self) -> &[String] {
        match &self.verdict {
            Verdict::Pass => &[],
            Verdict::Fail(r) => r,
        }
    }

    /// Names of the anomaly kinds found (empty when none or no report).
    pub fn anomaly_names(&self) -> Vec<&'static str> {
        self.report.as_ref().map(Report::names).unwrap_or_default()
    }
}

/// Judge a report and the liveness findings against the scenario.
pub fn evaluate(s: &Scenario, report: &Report, liveness: &[String]) -> Verdict {
    let mut reasons = Vec::new();
    for kind in report.unexpected(&s.allowed_kinds()) {
        let n = report.of(kind).len();
        let first = report
            .of(kind)
            .first()
            .map(|a| format!("{a:?}"))
            .unwrap_or_default();
        reasons.push(format!("anomaly {kind} x{n}, e.g. {first}"));
    }
    for kind in s.required_kinds() {
        if report.of(kind).is_empty() {
            reasons.push(format!("required anomaly {kind} not found"));
        }
    }
    if s.expect.liveness {
        reasons.extend(liveness.iter().map(|l| format!("liveness: {l}")));
    }
    if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{forget_reads_of, HistoryRecorder};
    use std::collections::BTreeMap;

    /// A history with one lost write (and the unseen/int-poll-skip it implies).
    fn lossy_report() -> Report {
        let mut h = HistoryRecorder::new();
        for v in 0..4 {
            h.send_invoke(0, 0, v, v as u64);
            h.send_complete(0, 0, v, Ok(v), v as u64);
        }
        h.assign(1, &[0], 10);
        h.poll_invoke(1, 11);
        let read: BTreeMap<i64, Vec<(i64, i64)>> = [(0, (0..4).map(|v| (v, v)).collect())].into();
        h.poll_complete(1, Ok(read), 12);
        let mut ops = h.into_ops();
        forget_reads_of(&mut ops, 0, 1);
        weir_jepsen::analyze(&ops)
    }

    fn scenario(expect: &str) -> Scenario {
        Scenario::parse(&format!("name = \"t\"\n[expect]\n{expect}")).unwrap()
    }

    #[test]
    fn unexpected_anomalies_fail_and_are_named() {
        let r = lossy_report();
        match evaluate(&scenario(""), &r, &[]) {
            Verdict::Fail(reasons) => {
                assert!(reasons.iter().any(|x| x.starts_with("anomaly lost-write")))
            }
            Verdict::Pass => panic!("a lost write passed"),
        }
    }

    #[test]
    fn allowed_anomalies_pass_and_required_ones_must_show() {
        let r = lossy_report();
        let all = "allowed = [\"lost-write\", \"unseen\", \"int-poll-skip\"]";
        assert_eq!(evaluate(&scenario(all), &r, &[]), Verdict::Pass);
        let clean = Report::default();
        let required = "required = [\"lost-write\"]";
        assert!(matches!(
            evaluate(&scenario(required), &clean, &[]),
            Verdict::Fail(r) if r[0].contains("required anomaly lost-write")
        ));
    }

    #[test]
    fn liveness_counts_unless_switched_off() {
        let clean = Report::default();
        let stalled = ["no send was acknowledged in the healed phase".to_string()];
        assert!(matches!(
            evaluate(&scenario(""), &clean, &stalled),
            Verdict::Fail(_)
        ));
        assert_eq!(
            evaluate(&scenario("liveness = false"), &clean, &stalled),
            Verdict::Pass
        );
    }
}

/// The seeds of a sweep in which each anomaly kind showed (allowed or not),
/// so a scenario that allows loss shows whether it really happens.
#[derive(Debug, Default)]
pub struct SweepTally {
    seen: BTreeMap<&'static str, u64>,
}

impl SweepTally {
    pub fn add(&mut self, outcome: &RunOutcome) {
        for name in outcome.anomaly_names() {
            *self.seen.entry(name).or_default() += 1;
        }
    }

    /// Print the tally and check `expect.must_show`: a guarantee switched
    /// off on purpose must be seen to break somewhere in the sweep, or the
    /// scenario is not testing what it claims. True if the sweep failed so.
    pub fn report(&self, s: &Scenario, seeds: u64) -> bool {
        if !self.seen.is_empty() {
            let parts: Vec<String> = self
                .seen
                .iter()
                .map(|(k, n)| format!("{k} in {n}"))
                .collect();
            println!("anomalies by seeds: {}", parts.join(", "));
        }
        let mut failed = false;
        for kind in s.must_show_kinds() {
            if !self.seen.contains_key(kind.name()) {
                failed = true;
                println!(
                    "must_show: {} appeared in none of the {seeds} seeds (the sweep FAILED)",
                    kind.name()
                );
            }
        }
        failed
    }
}
