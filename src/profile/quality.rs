//! A table's quality score: four components measured from its profile, each between 0 and
//! 1, weighted into a score from 0 to 100. The components are stored beside the score, so a
//! reader sees why a table scores what it does (README "Quality score").

use super::TableProfile;

/// Weights of completeness, validity, uniqueness and consistency; they sum to 1.
pub const WEIGHTS: [f64; 4] = [0.4, 0.3, 0.2, 0.1];

/// A text column counts towards validity when more than half its values have one semantic
/// type: the share of them that do not is the invalid share.
const TYPED_SHARE: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quality {
    /// 0 to 100: the weighted components.
    pub score: f64,
    /// Non-null cells among all cells.
    pub completeness: f64,
    /// Values that fit their column: in typed text columns the share of values of the
    /// column's semantic type; a column whose values forced its type to STRING counts with
    /// that share too.
    pub validity: f64,
    /// Rows that are not a repeat of an earlier row.
    pub uniqueness: f64,
    /// Columns whose type is the same in every file of the table.
    pub consistency: f64,
    /// The columns that lowered validity and consistency, by name.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub invalid_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mixed_columns: Vec<String>,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The quality of a profiled table.
pub fn score(t: &TableProfile) -> Quality {
    let rows = t.row_count.unwrap_or(0);
    let cells = rows as f64 * t.columns.len() as f64;
    let nulls: i64 = t.columns.iter().map(|c| c.null_count).sum();
    let completeness = if cells > 0.0 {
        1.0 - nulls as f64 / cells
    } else {
        1.0
    };
    let mut shares = Vec::new();
    let mut invalid_columns = Vec::new();
    for c in &t.columns {
        let typed = c.semantic_type.as_deref().is_some_and(|s| s != "text");
        let widened = t.widened_columns.contains(&c.column_name);
        if let (true, Some(share)) = (typed || widened, c.semantic_fraction)
            && (share > TYPED_SHARE || widened)
        {
            shares.push(share);
            if share < 1.0 {
                invalid_columns.push(c.column_name.clone());
            }
        }
    }
    let validity = if shares.is_empty() {
        1.0
    } else {
        shares.iter().sum::<f64>() / shares.len() as f64
    };
    let uniqueness = match (t.duplicate_rows, rows) {
        (Some(d), r) if r > 0 => 1.0 - d as f64 / r as f64,
        _ => 1.0,
    };
    let consistency = if t.columns.is_empty() {
        1.0
    } else {
        1.0 - t.mixed_columns.len() as f64 / t.columns.len() as f64
    };
    let parts = [completeness, validity, uniqueness, consistency];
    let score = 100.0 * parts.iter().zip(WEIGHTS).map(|(p, w)| p * w).sum::<f64>();
    Quality {
        score: round(score, 1),
        completeness: round(completeness, 4),
        validity: round(validity, 4),
        uniqueness: round(uniqueness, 4),
        consistency: round(consistency, 4),
        invalid_columns,
        mixed_columns: t.mixed_columns.clone(),
    }
}
