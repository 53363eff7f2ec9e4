//! `COPY … FROM STDIN` of projection rows in the text format: the speed
//! ceiling the exactly-once upserts are measured against (no version guard,
//! not part of the store contract).

use crate::sql::{
    QuotedTable, db_error, format_timestamp, table_read_error, validate_spec, validate_upsert,
};
use conductor_engine::projection::{RowUpsert, SqlValue, TableSpec, vector_to_bytes};
use conductor_engine::store::StoreError;
use sqlx::postgres::PgPool;

/// Bytes of COPY data sent per message.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Copies `rows` into `table` on a connection of `pool`; see
/// [`PostgresStore::copy_rows`](super::PostgresStore::copy_rows).
pub(super) async fn copy_rows(
    pool: &PgPool,
    table: &TableSpec,
    rows: &[RowUpsert],
) -> Result<u64, StoreError> {
    let operation = format!("copy into `{}`", table.name);
    validate_spec(table)?;
    let q = QuotedTable::new(table)?;
    let mut data = Vec::with_capacity(rows.len() * 128);
    for row in rows {
        if row.table != table.name {
            return Err(StoreError::Database {
                operation,
                detail: format!("row {:?} is for table `{}`", row.key, row.table),
                source: None,
            });
        }
        validate_upsert(table, row)?;
        copy_text_row(&mut data, row);
    }
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| db_error(operation.clone(), e))?;
    let sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT text)",
        q.table,
        q.column_list()
    );
    let mut copy = conn
        .copy_in_raw(&sql)
        .await
        .map_err(|e| table_read_error("copy into", table, e))?;
    for chunk in data.chunks(COPY_CHUNK_BYTES) {
        if let Err(e) = copy.send(chunk).await {
            // The server error (if any) surfaces on abort; keep the first.
            let _ = copy.abort("conductor: sending COPY data failed").await;
            return Err(db_error(operation, e));
        }
    }
    copy.finish().await.map_err(|e| db_error(operation, e))
}

/// Appends a BYTEA field in COPY text format: the hex input form `\x0a1b…`,
/// its backslash doubled because COPY text un-escapes the field before the
/// bytea input function reads it.
fn bytea_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(3 + 2 * bytes.len());
    out.extend_from_slice(b"\\\\x");
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

/// Appends one row in COPY text format: tab-separated, `\N` for NULL,
/// backslash escapes for the characters the format reserves.
fn copy_text_row(out: &mut Vec<u8>, row: &RowUpsert) {
    fn field(out: &mut Vec<u8>, text: &str) {
        for b in text.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.push(b),
            }
        }
    }
    for k in &row.key {
        field(out, k);
        out.push(b'\t');
    }
    out.extend_from_slice(row.version.to_string().as_bytes());
    for v in &row.values {
        out.push(b'\t');
        match v {
            SqlValue::Null => out.extend_from_slice(b"\\N"),
            SqlValue::Text(s) => field(out, s),
            SqlValue::BigInt(i) => out.extend_from_slice(i.to_string().as_bytes()),
            SqlValue::Double(d) if d.is_finite() => out.extend_from_slice(d.to_string().as_bytes()),
            SqlValue::Double(_) => out.extend_from_slice(b"\\N"),
            SqlValue::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            SqlValue::Json(j) => field(out, &j.to_string()),
            SqlValue::Timestamp(t) => field(out, &format_timestamp(t)),
            SqlValue::Vector(v) => bytea_hex(out, &vector_to_bytes(v)),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_reserved_characters() {
        let row = RowUpsert {
            table: "t",
            key: vec!["a\tb".into()],
            version: 7,
            values: vec![
                SqlValue::Null,
                SqlValue::Text("x\\y\nz".into()),
                SqlValue::Bool(true),
            ],
            deleted: false,
        };
        let mut out = Vec::new();
        copy_text_row(&mut out, &row);
        assert_eq!(out, b"a\\tb\t7\t\\N\tx\\\\y\\nz\tt\n");
    }

    #[test]
    fn copy_text_writes_vectors_as_escaped_bytea_hex() {
        let row = RowUpsert {
            table: "t",
            key: vec!["k".into()],
            version: 1,
            values: vec![
                SqlValue::Vector(vec![1.0, -2.5]),
                SqlValue::Vector(vec![]),
                SqlValue::Null,
            ],
            deleted: false,
        };
        let mut out = Vec::new();
        copy_text_row(&mut out, &row);
        // 1.0 = 0x3f800000, -2.5 = 0xc0200000, little-endian; the field
        // holds `\\x…`, which COPY reads as the bytea input `\x…`.
        assert_eq!(out, b"k\t1\t\\\\x0000803f000020c0\t\\\\x\t\\N\n");
    }
}
