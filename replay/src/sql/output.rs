//! Writing query results as a table, CSV, JSON lines or Parquet.

use super::{QueryResult, SqlError};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

fn io(e: impl std::fmt::Display) -> SqlError {
    SqlError::Internal(format!("writing the result: {e}"))
}

/// Writes a query result to `out` in `format` (Parquet: the caller passes a file).
pub fn write<W: Write + Send>(
    result: &QueryResult,
    format: Format,
    mut out: W,
) -> Result<(), SqlError> {
    let batches = &result.batches;
    match format {
        Format::Table => {
            if batches.is_empty() {
                let empty = RecordBatch::new_empty(result.schema.clone());
                writeln!(out, "{}", pretty_format_batches(&[empty]).map_err(io)?).map_err(io)?;
            } else {
                writeln!(out, "{}", pretty_format_batches(batches).map_err(io)?).map_err(io)?;
            }
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b).map_err(io)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b).map_err(io)?;
            }
            w.finish().map_err(io)?;
        }
        Format::Parquet => {
            let mut w =
                datafusion::parquet::arrow::ArrowWriter::try_new(out, result.schema.clone(), None)
                    .map_err(io)?;
            for b in batches {
                w.write(b).map_err(io)?;
            }
            w.close().map_err(io)?;
        }
    }
    Ok(())
}
