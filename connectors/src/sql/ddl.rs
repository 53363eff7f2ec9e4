//! Projection-table DDL: which [`TableSpec`]s a SQL store can hold, the
//! `CREATE TABLE` / `CREATE INDEX` statements per [`Dialect`], and the check
//! of an existing table's columns against its spec (migrate never alters a
//! table).

use super::dialect::{Dialect, MAX_IDENT_LEN, QuotedTable, quote_ident};
use conductor_engine::projection::{ColumnType, TableSpec};
use conductor_engine::store::StoreError;

/// Rejects a [`TableSpec`] the SQL stores cannot hold faithfully.
///
/// Key columns must be [`ColumnType::Text`]: [`RowUpsert::key`] carries keys
/// as strings and `dump_table` renders them as strings, so any other key type
/// would make SQL dumps order and render differently from the memory store.
///
/// [`RowUpsert::key`]: conductor_engine::projection::RowUpsert::key
pub fn validate_spec(spec: &TableSpec) -> Result<(), StoreError> {
    let fail = |detail: String| StoreError::Database {
        operation: format!("migrate table `{}`", spec.name),
        detail,
        source: None,
    };
    quote_ident(spec.name)?;
    if spec.key.is_empty() {
        return Err(fail(
            "a projection table needs at least one key column".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in spec.all_columns() {
        quote_ident(c.name)?;
        if !seen.insert(c.name) {
            return Err(fail(format!(
                "column `{}` is declared twice (note that `version` is added by the store)",
                c.name
            )));
        }
    }
    if let Some(c) = spec.key.iter().find(|c| c.ty != ColumnType::Text) {
        return Err(fail(format!(
            "key column `{}` is {:?}; SQL stores support text keys only, because row keys are strings",
            c.name, c.ty
        )));
    }
    for index in &spec.indexes {
        if index.is_empty() {
            return Err(fail("an index needs at least one column".into()));
        }
        if let Some(missing) = index.iter().find(|n| !seen.contains(*n)) {
            return Err(fail(format!(
                "index column `{missing}` is not a column of the table"
            )));
        }
    }
    Ok(())
}

/// `CREATE TABLE IF NOT EXISTS` and `CREATE INDEX IF NOT EXISTS` statements
/// for a projection table.
pub fn create_table_statements(
    spec: &TableSpec,
    dialect: Dialect,
) -> Result<Vec<String>, StoreError> {
    validate_spec(spec)?;
    let q = QuotedTable::new(spec)?;
    let mut cols = Vec::new();
    for (i, c) in spec.all_columns().iter().enumerate() {
        let is_key = i < spec.key.len();
        let collation = if is_key { dialect.key_collation() } else { "" };
        let null = if c.nullable && !is_key {
            ""
        } else {
            " NOT NULL"
        };
        cols.push(format!(
            "{} {}{collation}{null}",
            q.all[i],
            dialect.column_type(c.ty)
        ));
    }
    // STRICT makes SQLite refuse a value of the wrong type instead of storing it.
    // On Postgres, pages are left 30% free: a projection row is mostly
    // updated, and an update whose new version fits on the row's page (and
    // changes no indexed column) is HOT, writing no index entries. Measured
    // on the entities table: updates about 1.6x cheaper than at the default
    // fillfactor of 100 (docs/design/2026-12-02-pg-fold-throughput.md).
    let suffix = match dialect {
        Dialect::Sqlite => " STRICT",
        Dialect::Postgres => " WITH (fillfactor = 70)",
    };
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})){suffix}",
        q.table,
        cols.join(", "),
        q.key_list()
    )];
    for index in &spec.indexes {
        let name = quote_ident(&index_name(spec.name, index))?;
        let cols: Vec<String> = index
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Result<_, _>>()?;
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {} ({})",
            q.table,
            cols.join(", ")
        ));
    }
    out.extend(super::text_index::text_index_statements(spec, dialect)?);
    Ok(out)
}

/// A deterministic index name, `<table>__<col>_<col>`, shortened with a hash
/// when it would exceed the identifier limit (Postgres would silently truncate
/// it, and two truncated names could collide).
pub fn index_name(table: &str, columns: &[&str]) -> String {
    let full = format!("{table}__{}", columns.join("_"));
    if full.len() <= MAX_IDENT_LEN {
        return full;
    }
    // FNV-1a: stable across runs and platforms, unlike std's SipHash seed.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut prefix = full[..MAX_IDENT_LEN - 17].to_string();
    prefix.push_str(&format!("_{hash:016x}"));
    prefix
}

/// The column names a projection table must have, to compare against an
/// existing table: `CREATE TABLE IF NOT EXISTS` silently keeps an old shape,
/// and a commit would then fail far from the cause.
pub fn missing_columns(spec: &TableSpec, existing: &[String]) -> Vec<&'static str> {
    spec.all_columns()
        .iter()
        .map(|c| c.name)
        .filter(|n| !existing.iter().any(|e| e == n))
        .collect()
}

/// The error for a table that exists with fewer columns than its spec.
pub fn table_shape_error(spec: &TableSpec, missing: &[&str]) -> StoreError {
    StoreError::Database {
        operation: format!("migrate table `{}`", spec.name),
        detail: format!(
            "table `{}` already exists without column(s) {}; migrate never alters a table. \
             Hint: project into a new table name (rebuild, then swap) or drop the old table",
            spec.name,
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_engine::testing::contract_table;

    #[test]
    fn long_index_names_are_shortened_deterministically() {
        let cols = ["a_very_long_column_name", "another_very_long_column_name"];
        let a = index_name("some_long_projection_table_name", &cols);
        assert!(a.len() <= MAX_IDENT_LEN, "{a}");
        assert_eq!(a, index_name("some_long_projection_table_name", &cols));
        assert_ne!(
            a,
            index_name(
                "some_long_projection_table_name",
                &["a_very_long_column_name", "another_very_long_column_nam3"]
            )
        );
        assert_eq!(index_name("t", &["a", "b"]), "t__a_b");
    }

    #[test]
    fn rejects_non_text_key_columns_and_duplicate_version_column() {
        let mut spec = contract_table("t");
        spec.key[1].ty = ColumnType::BigInt;
        assert!(
            validate_spec(&spec)
                .unwrap_err()
                .to_string()
                .contains("text keys only")
        );
        let mut spec = contract_table("t");
        spec.columns[0].name = "version";
        assert!(
            validate_spec(&spec)
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
    }

    #[test]
    fn projection_ddl_maps_column_types_per_dialect() {
        let spec = contract_table("rows");
        assert_eq!(
            create_table_statements(&spec, Dialect::Postgres).unwrap(),
            vec![
                "CREATE TABLE IF NOT EXISTS \"rows\" (\"tenant_id\" TEXT COLLATE \"C\" NOT NULL, \"id\" TEXT COLLATE \"C\" NOT NULL, \
                 \"version\" BIGINT NOT NULL, \"label\" TEXT, \"count\" BIGINT NOT NULL, \"deleted\" BOOLEAN NOT NULL, \
                 \"attributes\" JSONB NOT NULL, \"updated_at\" TIMESTAMPTZ NOT NULL, PRIMARY KEY (\"tenant_id\", \"id\")) WITH (fillfactor = 70)",
                "CREATE INDEX IF NOT EXISTS \"rows__tenant_id_label\" ON \"rows\" (\"tenant_id\", \"label\")",
            ]
        );
        assert_eq!(
            create_table_statements(&spec, Dialect::Sqlite).unwrap()[0],
            "CREATE TABLE IF NOT EXISTS \"rows\" (\"tenant_id\" TEXT NOT NULL, \"id\" TEXT NOT NULL, \
             \"version\" INTEGER NOT NULL, \"label\" TEXT, \"count\" INTEGER NOT NULL, \"deleted\" INTEGER NOT NULL, \
             \"attributes\" TEXT NOT NULL, \"updated_at\" TEXT NOT NULL, PRIMARY KEY (\"tenant_id\", \"id\")) STRICT"
        );
        assert_eq!(
            QuotedTable::new(&spec)
                .unwrap()
                .version_guarded_conflict_clause(),
            "ON CONFLICT (\"tenant_id\", \"id\") DO UPDATE SET \"version\" = excluded.\"version\", \"label\" = excluded.\"label\", \
             \"count\" = excluded.\"count\", \"deleted\" = excluded.\"deleted\", \"attributes\" = excluded.\"attributes\", \
             \"updated_at\" = excluded.\"updated_at\" WHERE \"rows\".\"version\" < excluded.\"version\""
        );
    }
}
