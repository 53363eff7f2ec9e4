//! Reports: JSON for machines, a summary for people.

use std::path::Path;

/// Percentile (0..=100) of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Writes `report` as pretty JSON to `path` (creating its directory).
pub fn write(path: &Path, report: &serde_json::Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(
        path,
        serde_json::to_string_pretty(report).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}
