//! Drift: what changed in a table between the previous recorded run of its
//! `(workflow_id, source_id)` and this one. Tables and columns added, removed or renamed,
//! type and nullability changes, and statistics that moved beyond the thresholds below (the
//! README's "Profiles over time" lists them), each with a severity. Pure comparison of two
//! snapshots: reading the previous one is the job's.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::{ColumnProfile, TableProfile};

/// Row count: a relative change beyond this is `info`...
pub const ROW_COUNT_INFO: f64 = 0.2;
/// ...and beyond this (or to no rows at all) a `warning`.
pub const ROW_COUNT_WARNING: f64 = 0.5;
/// Null fraction: a rise by more than this (absolute) is a `warning`, a fall `info`.
pub const NULL_FRACTION: f64 = 0.1;
/// Distinct fraction (distinct values per non-null row): a move by more than this is a
/// `warning` (a key column that starts repeating, a code column that explodes).
pub const DISTINCT_FRACTION: f64 = 0.2;
/// Range: a new minimum or maximum beyond the previous range by more than this share of
/// its width is `info`.
pub const RANGE_GROWTH: f64 = 0.5;
/// Mean: a shift by more than this many previous standard deviations is a `warning`.
pub const MEAN_SHIFT: f64 = 0.5;
/// Distribution: the population stability index between the two histograms (the previous
/// run's bins): at least this is `info`...
pub const PSI_INFO: f64 = 0.1;
/// ...and at least this a `warning` (the usual reading: below 0.1 stable, 0.1-0.25 a
/// moderate shift, above 0.25 a significant one).
pub const PSI_WARNING: f64 = 0.25;
/// PSI over fewer values than this on either side says more about noise than about the
/// data: such histograms are not compared.
pub const PSI_MIN_VALUES: f64 = 100.0;
/// A renamed column: same position and type, and null and distinct fractions within this.
const RENAME_TOLERANCE: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Breaking,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Breaking => "breaking",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Self::Info),
            "warning" => Ok(Self::Warning),
            "breaking" => Ok(Self::Breaking),
            other => Err(format!(
                "{other:?} is not a severity (breaking, warning or info)"
            )),
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    TableAdded,
    TableRemoved,
    ColumnAdded,
    ColumnRemoved,
    ColumnRenamed,
    TypeChanged,
    NullabilityChanged,
    RowCount,
    NullFraction,
    DistinctFraction,
    Range,
    MeanShift,
    DistributionShift,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableAdded => "table_added",
            Self::TableRemoved => "table_removed",
            Self::ColumnAdded => "column_added",
            Self::ColumnRemoved => "column_removed",
            Self::ColumnRenamed => "column_renamed",
            Self::TypeChanged => "type_changed",
            Self::NullabilityChanged => "nullability_changed",
            Self::RowCount => "row_count",
            Self::NullFraction => "null_fraction",
            Self::DistinctFraction => "distinct_fraction",
            Self::Range => "range",
            Self::MeanShift => "mean_shift",
            Self::DistributionShift => "distribution_shift",
        }
    }
}

/// One change, as the `changes` table and the job result hold it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub table_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_name: Option<String>,
    pub change: ChangeKind,
    pub severity: Severity,
    /// The measured size of a statistical change (relative change, absolute difference,
    /// standard deviations, PSI) and the threshold it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_value: Option<String>,
    pub detail: String,
    /// The run compared with (set by the job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_run_id: Option<String>,
}

/// A histogram as stored (`{"edges": [..], "counts": [..]}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<f64>,
}

impl Histogram {
    pub fn parse(json: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let nums = |k: &str| -> Option<Vec<f64>> {
            v.get(k)?.as_array()?.iter().map(|x| x.as_f64()).collect()
        };
        let (edges, counts) = (nums("edges")?, nums("counts")?);
        (edges.len() == counts.len() + 1 && !counts.is_empty()).then_some(Self { edges, counts })
    }

    /// This histogram's mass in each bin of `bins` (assumed spread evenly within each of
    /// its own bins); mass outside `bins`' range goes to the end bins.
    fn rebinned(&self, bins: &[f64]) -> Vec<f64> {
        let n = bins.len() - 1;
        let mut out = vec![0.0; n];
        let bin_of = |x: f64| -> usize { bins[1..n].iter().position(|&e| x < e).unwrap_or(n - 1) };
        for (j, &c) in self.counts.iter().enumerate() {
            let (lo, hi) = (self.edges[j], self.edges[j + 1]);
            if c == 0.0 {
                continue;
            }
            if hi <= lo {
                out[bin_of(lo)] += c;
                continue;
            }
            let mut placed = 0.0;
            for i in 0..n {
                let (a, b) = (bins[i], bins[i + 1]);
                let overlap = (hi.min(b) - lo.max(a)).max(0.0);
                let share = c * overlap / (hi - lo);
                out[i] += share;
                placed += share;
            }
            // Below the first edge or above the last.
            let rest = c - placed;
            if rest > 1e-12 {
                let below = ((bins[0] - lo).max(0.0)).min(hi - lo) / (hi - lo);
                out[0] += c * below;
                out[n - 1] += (rest - c * below).max(0.0);
            }
        }
        out
    }
}

/// The population stability index of `current` against `previous`, over the previous
/// histogram's bins. `None` when either is empty or the previous one has no width.
pub fn psi(previous: &Histogram, current: &Histogram) -> Option<f64> {
    let first = *previous.edges.first()?;
    let last = *previous.edges.last()?;
    if last <= first {
        return None;
    }
    let p = &previous.counts;
    let q = current.rebinned(&previous.edges);
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp < PSI_MIN_VALUES || sq < PSI_MIN_VALUES {
        return None;
    }
    // An empty bin on either side would make the index infinite: the usual small floor.
    const FLOOR: f64 = 1e-4;
    Some(
        p.iter()
            .zip(&q)
            .map(|(a, b)| {
                let (a, b) = ((a / sp).max(FLOOR), (b / sq).max(FLOOR));
                (b - a) * (b / a).ln()
            })
            .sum(),
    )
}

/// What drift looks at in one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSnapshot {
    pub name: String,
    pub data_type: String,
    pub position: i32,
    pub is_nullable: bool,
    pub null_fraction: Option<f64>,
    pub distinct_fraction: Option<f64>,
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
    /// Numbers as numbers, times as microseconds since the epoch.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub temporal: bool,
    pub histogram: Option<Histogram>,
    pub pii: bool,
}

impl ColumnSnapshot {
    pub fn of(c: &ColumnProfile) -> Self {
        let temporal = c.min_timestamp.is_some() || c.max_timestamp.is_some();
        Self {
            name: c.column_name.clone(),
            data_type: c.data_type.clone(),
            position: c.position,
            is_nullable: c.is_nullable,
            null_fraction: c.null_fraction,
            distinct_fraction: c.distinct_fraction,
            mean: c.mean,
            stddev: c.stddev,
            min: c.min_double.or(c.min_timestamp.map(|m| m as f64)),
            max: c.max_double.or(c.max_timestamp.map(|m| m as f64)),
            temporal,
            histogram: c.histogram.as_ref().and_then(|h| Histogram::parse(&h.0)),
            pii: c.pii,
        }
    }
}

/// What drift looks at in one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSnapshot {
    pub row_count: Option<i64>,
    pub columns: Vec<ColumnSnapshot>,
}

impl TableSnapshot {
    pub fn of(t: &TableProfile) -> Self {
        Self {
            row_count: t.row_count,
            columns: t.columns.iter().map(ColumnSnapshot::of).collect(),
        }
    }
}

fn change(table: &str, column: Option<&str>, kind: ChangeKind, severity: Severity) -> Change {
    Change {
        table_name: table.to_string(),
        column_name: column.map(str::to_string),
        change: kind,
        severity,
        measure: None,
        threshold: None,
        previous_value: None,
        current_value: None,
        detail: String::new(),
        previous_run_id: None,
    }
}

pub fn table_added(table: &str, t: &TableSnapshot) -> Change {
    Change {
        current_value: Some(format!("{} columns", t.columns.len())),
        detail: format!("table {table} is new"),
        ..change(table, None, ChangeKind::TableAdded, Severity::Info)
    }
}

pub fn table_removed(table: &str, t: &TableSnapshot) -> Change {
    Change {
        previous_value: Some(format!("{} columns", t.columns.len())),
        detail: format!("table {table} is gone from the source"),
        ..change(table, None, ChangeKind::TableRemoved, Severity::Breaking)
    }
}

/// Every change from `prev` to `cur` of table `table`, schema changes first.
pub fn compare(table: &str, prev: &TableSnapshot, cur: &TableSnapshot) -> Vec<Change> {
    let mut out = Vec::new();
    let prev_names: BTreeSet<&str> = prev.columns.iter().map(|c| c.name.as_str()).collect();
    let cur_names: BTreeSet<&str> = cur.columns.iter().map(|c| c.name.as_str()).collect();
    let mut removed: Vec<&ColumnSnapshot> = prev
        .columns
        .iter()
        .filter(|c| !cur_names.contains(c.name.as_str()))
        .collect();
    let mut added: Vec<&ColumnSnapshot> = cur
        .columns
        .iter()
        .filter(|c| !prev_names.contains(c.name.as_str()))
        .collect();

    // A column gone and one new at its position, of its type and with its statistics: the
    // same data under a new name.
    let mut renamed = Vec::new();
    removed.retain(|p| {
        let Some(i) = added.iter().position(|c| same_data(p, c)) else {
            return true;
        };
        renamed.push((*p, added.remove(i)));
        false
    });
    for (p, c) in &renamed {
        out.push(Change {
            previous_value: Some(p.name.clone()),
            current_value: Some(c.name.clone()),
            detail: format!(
                "column {} is now called {} (same position, type and statistics): readers of the old name break",
                p.name, c.name
            ),
            ..change(
                table,
                Some(&c.name),
                ChangeKind::ColumnRenamed,
                Severity::Breaking,
            )
        });
        out.extend(compare_columns(table, p, c));
    }
    for p in removed {
        out.push(Change {
            previous_value: Some(p.data_type.clone()),
            detail: format!("column {} ({}) was removed", p.name, p.data_type),
            ..change(
                table,
                Some(&p.name),
                ChangeKind::ColumnRemoved,
                Severity::Breaking,
            )
        });
    }
    for c in added {
        out.push(Change {
            current_value: Some(c.data_type.clone()),
            detail: format!("column {} ({}) was added", c.name, c.data_type),
            ..change(
                table,
                Some(&c.name),
                ChangeKind::ColumnAdded,
                Severity::Info,
            )
        });
    }

    if let (Some(a), Some(b)) = (prev.row_count, cur.row_count) {
        let rel = if a == 0 {
            if b == 0 { 0.0 } else { f64::INFINITY }
        } else {
            (b - a) as f64 / a as f64
        };
        let severity = if (a > 0 && b == 0) || rel.abs() > ROW_COUNT_WARNING {
            Some((Severity::Warning, ROW_COUNT_WARNING))
        } else if rel.abs() > ROW_COUNT_INFO {
            Some((Severity::Info, ROW_COUNT_INFO))
        } else {
            None
        };
        if let Some((severity, threshold)) = severity {
            out.push(Change {
                measure: rel.is_finite().then_some(rel),
                threshold: Some(threshold),
                previous_value: Some(a.to_string()),
                current_value: Some(b.to_string()),
                detail: format!("rows {a} -> {b}"),
                ..change(table, None, ChangeKind::RowCount, severity)
            });
        }
    }

    for p in &prev.columns {
        if let Some(c) = cur.columns.iter().find(|c| c.name == p.name) {
            out.extend(compare_columns(table, p, c));
        }
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>, tolerance: f64) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= tolerance,
        (None, None) => true,
        _ => false,
    }
}

fn same_data(p: &ColumnSnapshot, c: &ColumnSnapshot) -> bool {
    p.position == c.position
        && p.data_type == c.data_type
        && close(p.null_fraction, c.null_fraction, RENAME_TOLERANCE)
        && close(p.distinct_fraction, c.distinct_fraction, RENAME_TOLERANCE)
        && match (p.mean, c.mean, p.stddev) {
            (Some(a), Some(b), Some(s)) => (a - b).abs() <= MEAN_SHIFT * s.max(f64::EPSILON),
            _ => true,
        }
}

/// The changes of one column present (maybe renamed) in both runs.
fn compare_columns(table: &str, p: &ColumnSnapshot, c: &ColumnSnapshot) -> Vec<Change> {
    let mut out = Vec::new();
    let col = Some(c.name.as_str());
    // VOID: every value null, no type to speak of (the null fraction tells that change).
    if p.data_type != c.data_type && p.data_type != "VOID" && c.data_type != "VOID" {
        let widening = widens(&p.data_type, &c.data_type);
        out.push(Change {
            previous_value: Some(p.data_type.clone()),
            current_value: Some(c.data_type.clone()),
            detail: format!(
                "column {}: type {} -> {} ({})",
                c.name,
                p.data_type,
                c.data_type,
                if widening {
                    "widening: every old value still fits"
                } else {
                    "narrowing: old values may not fit"
                }
            ),
            ..change(
                table,
                col,
                ChangeKind::TypeChanged,
                if widening {
                    Severity::Warning
                } else {
                    Severity::Breaking
                },
            )
        });
        // Statistics of different types do not compare.
        return out;
    }
    if p.data_type != c.data_type {
        return compare_nulls(table, p, c);
    }
    if p.is_nullable != c.is_nullable {
        out.push(Change {
            previous_value: Some(nullability(p.is_nullable).into()),
            current_value: Some(nullability(c.is_nullable).into()),
            detail: format!(
                "column {}: {} -> {}",
                c.name,
                nullability(p.is_nullable),
                nullability(c.is_nullable)
            ),
            ..change(
                table,
                col,
                ChangeKind::NullabilityChanged,
                if c.is_nullable {
                    Severity::Warning
                } else {
                    Severity::Info
                },
            )
        });
    }
    out.extend(compare_nulls(table, p, c));
    if let (Some(a), Some(b)) = (p.distinct_fraction, c.distinct_fraction) {
        let d = b - a;
        if d.abs() > DISTINCT_FRACTION {
            out.push(Change {
                measure: Some(d),
                threshold: Some(DISTINCT_FRACTION),
                previous_value: Some(fraction(a)),
                current_value: Some(fraction(b)),
                detail: format!(
                    "column {}: distinct fraction {} -> {}",
                    c.name,
                    fraction(a),
                    fraction(b)
                ),
                ..change(table, col, ChangeKind::DistinctFraction, Severity::Warning)
            });
        }
    }
    // Ranges and means are values of the data: not for a column holding personal data.
    if !p.pii && !c.pii {
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (p.min, p.max, c.min, c.max) {
            let width = a1 - a0;
            let grew = (a0 - b0).max(b1 - a1).max(0.0);
            let measure = if width > 0.0 {
                grew / width
            } else if grew > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if measure > RANGE_GROWTH {
                let show = |x: f64| value_text(x, c.temporal);
                out.push(Change {
                    measure: measure.is_finite().then_some(measure),
                    threshold: Some(RANGE_GROWTH),
                    previous_value: Some(format!("[{}, {}]", show(a0), show(a1))),
                    current_value: Some(format!("[{}, {}]", show(b0), show(b1))),
                    detail: format!(
                        "column {}: range [{}, {}] -> [{}, {}]",
                        c.name,
                        show(a0),
                        show(a1),
                        show(b0),
                        show(b1)
                    ),
                    ..change(table, col, ChangeKind::Range, Severity::Info)
                });
            }
        }
        if let (Some(a), Some(b), Some(s)) = (p.mean, c.mean, p.stddev)
            && s > 0.0
        {
            let shift = (b - a) / s;
            if shift.abs() > MEAN_SHIFT {
                out.push(Change {
                    measure: Some(shift),
                    threshold: Some(MEAN_SHIFT),
                    previous_value: Some(number(a)),
                    current_value: Some(number(b)),
                    detail: format!(
                        "column {}: mean {} -> {} ({shift:+.2} standard deviations)",
                        c.name,
                        number(a),
                        number(b)
                    ),
                    ..change(table, col, ChangeKind::MeanShift, Severity::Warning)
                });
            }
        }
    }
    if let (Some(a), Some(b)) = (&p.histogram, &c.histogram)
        && let Some(index) = psi(a, b)
        && index >= PSI_INFO
    {
        let (severity, threshold) = if index >= PSI_WARNING {
            (Severity::Warning, PSI_WARNING)
        } else {
            (Severity::Info, PSI_INFO)
        };
        out.push(Change {
            measure: Some(index),
            threshold: Some(threshold),
            detail: format!("column {}: distribution shifted (PSI {index:.3})", c.name),
            ..change(table, col, ChangeKind::DistributionShift, severity)
        });
    }
    out
}

/// A null fraction that rose or fell beyond [`NULL_FRACTION`].
fn compare_nulls(table: &str, p: &ColumnSnapshot, c: &ColumnSnapshot) -> Vec<Change> {
    let mut out = Vec::new();
    let col = Some(c.name.as_str());
    if let (Some(a), Some(b)) = (p.null_fraction, c.null_fraction) {
        let d = b - a;
        if d.abs() > NULL_FRACTION {
            out.push(Change {
                measure: Some(d),
                threshold: Some(NULL_FRACTION),
                previous_value: Some(fraction(a)),
                current_value: Some(fraction(b)),
                detail: format!(
                    "column {}: null fraction {} -> {}",
                    c.name,
                    fraction(a),
                    fraction(b)
                ),
                ..change(
                    table,
                    col,
                    ChangeKind::NullFraction,
                    if d > 0.0 {
                        Severity::Warning
                    } else {
                        Severity::Info
                    },
                )
            });
        }
    }
    out
}

fn nullability(nullable: bool) -> &'static str {
    if nullable { "nullable" } else { "not null" }
}

fn fraction(x: f64) -> String {
    format!("{x:.4}")
}

fn number(x: f64) -> String {
    format!("{}", (x * 1e6).round() / 1e6)
}

fn value_text(x: f64, temporal: bool) -> String {
    if temporal {
        chrono::DateTime::from_timestamp_micros(x as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| number(x))
    } else {
        number(x)
    }
}

/// Whether every value of Spark type `from` is a value of `to`.
pub fn widens(from: &str, to: &str) -> bool {
    fn decimal(t: &str) -> Option<(i64, i64)> {
        let inner = t.strip_prefix("DECIMAL(")?.strip_suffix(')')?;
        let (p, s) = inner.split_once(',')?;
        Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
    }
    // Integer digits each integer type needs.
    fn integer_digits(t: &str) -> Option<i64> {
        Some(match t {
            "TINYINT" => 3,
            "SMALLINT" => 5,
            "INT" => 10,
            "BIGINT" => 19,
            _ => return None,
        })
    }
    if to == "STRING" {
        return true;
    }
    if let (Some(a), Some(b)) = (integer_digits(from), integer_digits(to)) {
        return b >= a;
    }
    if let (Some(a), Some((p, s))) = (integer_digits(from), decimal(to)) {
        return p - s >= a;
    }
    if let (Some((p1, s1)), Some((p2, s2))) = (decimal(from), decimal(to)) {
        return s2 >= s1 && p2 - s2 >= p1 - s1;
    }
    match (from, to) {
        // Integers and decimals into floating point: every value has a nearest double.
        (f, "DOUBLE") if integer_digits(f).is_some() || decimal(f).is_some() || f == "FLOAT" => {
            true
        }
        ("TINYINT" | "SMALLINT" | "INT", "FLOAT") => true,
        ("DATE", "TIMESTAMP" | "TIMESTAMP_NTZ") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, position: i32) -> ColumnSnapshot {
        ColumnSnapshot {
            name: name.into(),
            data_type: ty.into(),
            position,
            is_nullable: true,
            null_fraction: Some(0.0),
            distinct_fraction: Some(1.0),
            mean: Some(50.0),
            stddev: Some(10.0),
            min: Some(0.0),
            max: Some(100.0),
            temporal: false,
            histogram: None,
            pii: false,
        }
    }

    fn kinds(changes: &[Change]) -> Vec<(&str, Option<&str>, Severity)> {
        changes
            .iter()
            .map(|c| (c.change.as_str(), c.column_name.as_deref(), c.severity))
            .collect()
    }

    #[test]
    fn schema_changes_and_their_severities() {
        let prev = TableSnapshot {
            row_count: Some(1000),
            columns: vec![
                col("id", "INT", 0),
                col("amount", "DOUBLE", 1),
                col("old_name", "STRING", 2),
                col("gone", "BIGINT", 3),
                col("code", "BIGINT", 4),
            ],
        };
        let mut cur = prev.clone();
        cur.columns[0].data_type = "BIGINT".into();
        cur.columns[1].data_type = "INT".into();
        cur.columns[2].name = "new_name".into();
        cur.columns.remove(3);
        cur.columns[3].position = 3;
        cur.columns.push(col("fresh", "STRING", 4));
        cur.row_count = Some(1100);
        let got = compare("t", &prev, &cur);
        assert_eq!(
            kinds(&got),
            vec![
                ("column_renamed", Some("new_name"), Severity::Breaking),
                ("column_removed", Some("gone"), Severity::Breaking),
                ("column_added", Some("fresh"), Severity::Info),
                ("type_changed", Some("id"), Severity::Warning),
                ("type_changed", Some("amount"), Severity::Breaking),
            ],
            "{got:#?}"
        );
        // The same table: nothing.
        assert!(compare("t", &prev, &prev).is_empty());
        // A column at the same position with other statistics is a removal and an addition.
        let mut other = prev.clone();
        other.columns[2].name = "new_name".into();
        other.columns[2].null_fraction = Some(0.5);
        assert_eq!(
            kinds(&compare("t", &prev, &other)),
            vec![
                ("column_removed", Some("old_name"), Severity::Breaking),
                ("column_added", Some("new_name"), Severity::Info),
            ]
        );
    }

    #[test]
    fn statistics_beyond_their_thresholds() {
        let prev = TableSnapshot {
            row_count: Some(1000),
            columns: vec![col("x", "DOUBLE", 0)],
        };
        let mut cur = prev.clone();
        cur.row_count = Some(300);
        let c = &mut cur.columns[0];
        c.null_fraction = Some(0.25);
        c.distinct_fraction = Some(0.5);
        c.mean = Some(58.0);
        c.max = Some(180.0);
        c.is_nullable = false;
        let got = compare("t", &prev, &cur);
        assert_eq!(
            kinds(&got),
            vec![
                ("row_count", None, Severity::Warning),
                ("nullability_changed", Some("x"), Severity::Info),
                ("null_fraction", Some("x"), Severity::Warning),
                ("distinct_fraction", Some("x"), Severity::Warning),
                ("range", Some("x"), Severity::Info),
                ("mean_shift", Some("x"), Severity::Warning),
            ],
            "{got:#?}"
        );
        assert_eq!(got[0].measure, Some(-0.7));
        assert!((got[5].measure.unwrap() - 0.8).abs() < 1e-9);
        // Just inside every threshold: nothing.
        let mut near = prev.clone();
        near.row_count = Some(1150);
        let c = &mut near.columns[0];
        c.null_fraction = Some(0.09);
        c.distinct_fraction = Some(0.81);
        c.mean = Some(54.0);
        c.max = Some(149.0);
        assert!(compare("t", &prev, &near).is_empty());
        // A personal column's values are not compared (nor shown).
        let (mut p, mut q) = (prev.clone(), cur.clone());
        p.columns[0].pii = true;
        q.columns[0].pii = true;
        assert!(
            compare("t", &p, &q)
                .iter()
                .all(|c| !matches!(c.change, ChangeKind::Range | ChangeKind::MeanShift))
        );
    }

    fn hist(values: impl Iterator<Item = f64>, lo: f64, hi: f64) -> Histogram {
        let edges: Vec<f64> = (0..=20).map(|i| lo + (hi - lo) * i as f64 / 20.0).collect();
        let mut counts = vec![0.0; 20];
        for v in values {
            let i = (((v - lo) / (hi - lo) * 20.0) as usize).min(19);
            counts[i] += 1.0;
        }
        Histogram { edges, counts }
    }

    #[test]
    fn psi_of_same_shifted_and_rebinned_distributions() {
        let uniform = hist((0..10_000).map(|i| i as f64 / 100.0), 0.0, 100.0);
        assert!(psi(&uniform, &uniform).unwrap().abs() < 1e-12);
        // The same distribution seen through other bins: close to zero.
        let rebinned = hist((0..10_000).map(|i| i as f64 / 100.0), 0.0, 100.0 - 0.01);
        assert!(psi(&uniform, &rebinned).unwrap() < 0.01);
        // Shifted by a fifth of its range: well past the warning threshold.
        let shifted = hist((0..10_000).map(|i| 20.0 + i as f64 / 100.0), 20.0, 120.0);
        let index = psi(&uniform, &shifted).unwrap();
        assert!(index > PSI_WARNING, "{index}");
        // A third of the lower half moved into the upper half: moderate (about 0.116).
        let some = hist(
            (0..10_000).map(|i| {
                let v = i as f64 / 100.0;
                if i % 3 == 0 && v < 50.0 { v + 50.0 } else { v }
            }),
            0.0,
            100.0,
        );
        let index = psi(&uniform, &some).unwrap();
        assert!((PSI_INFO..PSI_WARNING).contains(&index), "{index}");
        // Too few values to tell.
        let few = hist((0..50).map(|i| i as f64), 0.0, 50.0);
        let moved = hist((0..50).map(|i| 30.0 + i as f64), 30.0, 80.0);
        assert_eq!(psi(&few, &moved), None);
        let parsed = Histogram::parse(r#"{"edges":[0,1,2],"counts":[3,4],"exact":true}"#).unwrap();
        assert_eq!(parsed.counts, vec![3.0, 4.0]);
        assert!(Histogram::parse(r#"{"edges":[0,1],"counts":[3,4]}"#).is_none());
    }

    #[test]
    fn widening_and_narrowing_types() {
        for (a, b) in [
            ("INT", "BIGINT"),
            ("INT", "DOUBLE"),
            ("BIGINT", "DECIMAL(20,0)"),
            ("DECIMAL(10,2)", "DECIMAL(12,4)"),
            ("DATE", "TIMESTAMP"),
            ("BOOLEAN", "STRING"),
        ] {
            assert!(widens(a, b), "{a} -> {b}");
        }
        for (a, b) in [
            ("BIGINT", "INT"),
            ("DOUBLE", "BIGINT"),
            ("STRING", "INT"),
            ("DECIMAL(12,4)", "DECIMAL(10,2)"),
            ("TIMESTAMP", "DATE"),
            ("BIGINT", "DECIMAL(10,0)"),
        ] {
            assert!(!widens(a, b), "{a} -> {b}");
        }
    }
}
