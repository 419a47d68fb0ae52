//! The results: one row per figure with the baseline it was measured against, the ratio, the
//! target and whether it was met, printed as a markdown table; plus notes, and the harness's
//! own failures (which make the run exit non-zero, while a missed speed target never does).

use std::fmt::Write as _;

/// The unit a figure is shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Requests per second.
    PerSecond,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Seconds.
    Seconds,
    /// MiB.
    MiB,
    /// A count (whole numbers).
    Count,
    /// A plain number with two decimals (e.g. statements per request).
    Number,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::PerSecond => format!("{} req/s", thousands(value.round())),
            Unit::Millis => format!("{value:.2} ms"),
            Unit::Micros => format!("{value:.0} µs"),
            Unit::Seconds => format!("{value:.3} s"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::Count => thousands(value.round()),
            Unit::Number => format!("{value:.2}"),
        }
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{}", value.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// What a figure should be.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Informational.
    None,
    /// value ≥ this.
    AtLeast(f64),
    /// value ≤ this.
    AtMost(f64),
    /// value == this.
    Exactly(f64),
    /// value == baseline.
    SameAsBaseline,
    /// value / baseline ≥ this.
    RatioAtLeast(f64),
    /// value − baseline ≤ this.
    AboveBaselineAtMost(f64),
}

/// Whether missing a target is a result to report or a broken guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Speed and size: reported, never fails the run.
    Speed,
    /// Correctness (exactly one refresh, every call answered, every event delivered): a miss
    /// fails the run.
    Correctness,
}

/// A baseline: its value and what was measured.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// The value, in the row's unit.
    pub value: f64,
    /// What it is, e.g. "`{ __typename }`, c=16".
    pub what: String,
}

/// One figure.
#[derive(Clone, Debug)]
pub struct Row {
    /// e.g. "1 list (SQLite)".
    pub scenario: String,
    /// e.g. "throughput, c=16".
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// Its unit (the baseline shares it).
    pub unit: Unit,
    /// What it is compared with.
    pub baseline: Option<Baseline>,
    /// What it should be.
    pub target: Target,
    /// What a miss means.
    pub kind: Kind,
}

impl Row {
    /// An informational row.
    pub fn info(scenario: &str, metric: &str, value: f64, unit: Unit) -> Row {
        Row {
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            value,
            unit,
            baseline: None,
            target: Target::None,
            kind: Kind::Speed,
        }
    }

    /// Compared with a baseline.
    pub fn against(mut self, value: f64, what: &str) -> Row {
        self.baseline = Some(Baseline {
            value,
            what: what.to_owned(),
        });
        self
    }

    /// With a speed or size target.
    pub fn target(mut self, target: Target) -> Row {
        self.target = target;
        self
    }

    /// With a correctness target.
    pub fn must(mut self, target: Target) -> Row {
        self.target = target;
        self.kind = Kind::Correctness;
        self
    }

    fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.as_ref()?.value;
        (baseline != 0.0).then(|| self.value / baseline)
    }

    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub fn met(&self) -> Option<bool> {
        let baseline = self.baseline.as_ref().map(|b| b.value);
        // Compare at the precision shown, so "2.00 ms ≤ 2 ms" reads as met.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        match self.target {
            Target::None => None,
            Target::AtLeast(t) => Some(self.value >= t),
            Target::AtMost(t) => Some(self.value <= t),
            Target::Exactly(t) => Some(close(self.value, t)),
            Target::SameAsBaseline => baseline.map(|b| close(self.value, b)),
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::AboveBaselineAtMost(t) => baseline.map(|b| self.value - b <= t),
        }
    }

    fn target_text(&self) -> String {
        let show = |v| self.unit.show(v);
        match self.target {
            Target::None => "—".to_owned(),
            Target::AtLeast(t) => format!("≥ {}", show(t)),
            Target::AtMost(t) => format!("≤ {}", show(t)),
            Target::Exactly(t) => format!("= {}", show(t)),
            Target::SameAsBaseline => "= baseline".to_owned(),
            Target::RatioAtLeast(t) => format!("ratio ≥ {t:.2}"),
            Target::AboveBaselineAtMost(t) => format!("≤ baseline + {}", show(t)),
        }
    }
}

/// Everything a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// The figures, in order.
    pub rows: Vec<Row>,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
    /// Things that make the run fail: the harness broke or a correctness target was missed.
    pub failures: Vec<String>,
}

impl Report {
    /// Add a row; a missed correctness target is also a failure.
    pub fn push(&mut self, row: Row) {
        if row.kind == Kind::Correctness && row.met() == Some(false) {
            self.failures.push(format!(
                "{}: {} is {}, expected {}",
                row.scenario,
                row.metric,
                row.unit.show(row.value),
                row.target_text()
            ));
        }
        self.rows.push(row);
    }

    /// Add a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Record a harness failure.
    pub fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }

    /// The markdown table, notes and failures.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | metric | value | baseline | ratio | target | met? |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---:|---|---|");
        for row in &self.rows {
            let baseline = row.baseline.as_ref().map_or("—".to_owned(), |b| {
                format!("{} ({})", row.unit.show(b.value), b.what)
            });
            let ratio = row.ratio().map_or("—".to_owned(), |r| format!("{r:.2}"));
            let met = match row.met() {
                None => "—",
                Some(true) => "yes",
                Some(false) => "**no**",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.metric,
                row.unit.show(row.value),
                baseline,
                ratio,
                row.target_text(),
                met
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let _ = writeln!(out);
        if self.failures.is_empty() {
            let _ = writeln!(out, "Harness checks: all passed.");
        } else {
            let _ = writeln!(out, "Harness checks FAILED:");
            for failure in &self.failures {
                let _ = writeln!(out, "- {failure}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(Unit::PerSecond.show(12345.6), "12,346 req/s");
        assert_eq!(Unit::Count.show(1000.0), "1,000");
        assert_eq!(Unit::Count.show(7.0), "7");
        assert_eq!(Unit::Millis.show(1.234), "1.23 ms");
        assert_eq!(Unit::Micros.show(181.6), "182 µs");
    }

    #[test]
    fn targets_compare_with_the_baseline() {
        let row = Row::info("s", "m", 900.0, Unit::PerSecond).against(1000.0, "b");
        assert_eq!(
            row.clone().target(Target::RatioAtLeast(0.8)).met(),
            Some(true)
        );
        assert_eq!(
            row.clone().target(Target::RatioAtLeast(0.95)).met(),
            Some(false)
        );
        let latency = Row::info("s", "m", 2.5, Unit::Millis).against(1.0, "b");
        assert_eq!(
            latency.target(Target::AboveBaselineAtMost(1.0)).met(),
            Some(false)
        );
        let mut report = Report::default();
        report.push(Row::info("s", "m", 2.0, Unit::Count).must(Target::Exactly(1.0)));
        report.push(Row::info("s", "m", 2.0, Unit::Count).target(Target::Exactly(1.0)));
        assert_eq!(report.failures.len(), 1, "only correctness misses fail");
    }
}
