//! Full-text indexes for keyword search ([`TextIndex`]): the DDL per
//! dialect and the query.
//!
//! - Postgres: a GIN index on `jsonb_to_tsvector('simple', json,
//!   '["string","numeric"]')` — the same expression in the query, so the
//!   planner uses it; `ts_rank` scores. The index moves with its table on a
//!   swap (`ALTER TABLE … SET SCHEMA`).
//! - SQLite: an FTS5 table `<table>__fts` (body, tenant, ident) kept in
//!   step by triggers on the table — inside the fold's own transaction,
//!   including the row copies of a swap — and filled from the existing rows
//!   at migration (idempotently); `-bm25` scores.
//!
//! The `simple` configuration and `unicode61` tokenizer lower-case and split
//! on non-alphanumerics without stemming or stop words: names, dates and
//! postcodes are matched as written.

use super::{Dialect, QuotedTable, quote_ident};
use conductor_engine::projection::{TableSpec, TextIndex};
use conductor_engine::store::StoreError;

const PG_VECTOR: &str = "jsonb_to_tsvector('simple', {json}, '[\"string\",\"numeric\"]')";

fn text_index(spec: &TableSpec) -> Result<&TextIndex, StoreError> {
    spec.text_index.as_ref().ok_or_else(|| {
        StoreError::permanent(
            "keyword search",
            format!("table `{}` has no text index", spec.name),
        )
    })
}

fn fts_table(spec: &TableSpec) -> Result<String, StoreError> {
    quote_ident(&format!("{}__fts", spec.name))
}

/// The statements that create `spec`'s text index (none without one).
pub fn text_index_statements(
    spec: &TableSpec,
    dialect: Dialect,
) -> Result<Vec<String>, StoreError> {
    let Some(t) = &spec.text_index else {
        return Ok(Vec::new());
    };
    let table = QuotedTable::new(spec)?.table;
    let json = quote_ident(t.json)?;
    match dialect {
        Dialect::Postgres => {
            let name = quote_ident(&format!("{}__fts", spec.name))?;
            let vector = PG_VECTOR.replace("{json}", &json);
            Ok(vec![format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} USING GIN ({vector})"
            )])
        }
        Dialect::Sqlite => {
            let fts = fts_table(spec)?;
            let (tenant, id) = (quote_ident(t.tenant)?, quote_ident(t.id)?);
            let text = |row: &str| {
                format!(
                    "(SELECT group_concat(value, ' ') FROM json_each({row}.{json}) WHERE type IN ('text', 'integer', 'real'))"
                )
            };
            let live = |row: &str| match t.deleted {
                Some(d) => quote_ident(d).map(|d| format!("NOT {row}.{d}")),
                None => Ok("1".to_string()),
            };
            let trigger = |suffix: &str| quote_ident(&format!("{}__fts_{suffix}", spec.name));
            let insert = |row: &str| -> Result<String, StoreError> {
                Ok(format!(
                    "INSERT INTO {fts} (rowid, body, tenant, ident) SELECT {row}.rowid, {}, {row}.{tenant}, {row}.{id} WHERE {};",
                    text(row),
                    live(row)?
                ))
            };
            Ok(vec![
                format!(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(body, tenant UNINDEXED, ident UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')"
                ),
                format!(
                    "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {table} BEGIN {} END",
                    trigger("insert")?,
                    insert("NEW")?
                ),
                format!(
                    "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {table} BEGIN DELETE FROM {fts} WHERE rowid = OLD.rowid; {} END",
                    trigger("update")?,
                    insert("NEW")?
                ),
                format!(
                    "CREATE TRIGGER IF NOT EXISTS {} AFTER DELETE ON {table} BEGIN DELETE FROM {fts} WHERE rowid = OLD.rowid; END",
                    trigger("delete")?
                ),
                // Rows written before the index existed (an older store).
                format!(
                    "INSERT INTO {fts} (rowid, body, tenant, ident) SELECT t.rowid, {}, t.{tenant}, t.{id} FROM {table} t WHERE {} AND NOT EXISTS (SELECT 1 FROM {fts} f WHERE f.rowid = t.rowid)",
                    text("t"),
                    live("t")?
                ),
            ])
        }
    }
}

/// The keyword query over `spec`'s text index; binds (tenant, match
/// expression, limit) in that order.
pub fn keyword_query(spec: &TableSpec, dialect: Dialect) -> Result<String, StoreError> {
    let t = text_index(spec)?;
    match dialect {
        Dialect::Postgres => {
            let table = QuotedTable::new(spec)?.table;
            let (tenant, id, json) = (
                quote_ident(t.tenant)?,
                quote_ident(t.id)?,
                quote_ident(t.json)?,
            );
            let vector = PG_VECTOR.replace("{json}", &json);
            let live = match t.deleted {
                Some(d) => format!(" AND NOT {}", quote_ident(d)?),
                None => String::new(),
            };
            Ok(format!(
                "SELECT {id}::text, ts_rank({vector}, q)::float8 AS score FROM {table}, to_tsquery('simple', $2) q \
                 WHERE {tenant} = $1{live} AND {vector} @@ q ORDER BY score DESC, {id} LIMIT $3"
            ))
        }
        Dialect::Sqlite => {
            let fts = fts_table(spec)?;
            Ok(format!(
                "SELECT ident, -bm25({fts}) AS score FROM {fts} WHERE {fts} MATCH ?2 AND tenant = ?1 \
                 ORDER BY score DESC, ident LIMIT ?3"
            ))
        }
    }
}

/// Any of `terms` (already [`keyword_terms`](conductor_engine::store::keyword_terms)),
/// in the dialect's match syntax.
pub fn match_expression(terms: &[String], dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => terms.join(" | "),
        Dialect::Sqlite => terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_engine::projection::{ColumnSpec, ColumnType};

    fn spec() -> TableSpec {
        let col = |name, ty| ColumnSpec {
            name,
            ty,
            nullable: false,
        };
        TableSpec {
            name: "things",
            key: vec![
                col("tenant_id", ColumnType::Text),
                col("id", ColumnType::Text),
            ],
            columns: vec![
                col("attrs", ColumnType::Json),
                col("deleted", ColumnType::Bool),
            ],
            indexes: Vec::new(),
            text_index: Some(TextIndex {
                json: "attrs",
                tenant: "tenant_id",
                id: "id",
                deleted: Some("deleted"),
            }),
        }
    }

    #[test]
    fn a_table_without_a_text_index_gets_no_statements_and_no_query() {
        let mut s = spec();
        s.text_index = None;
        assert!(
            text_index_statements(&s, Dialect::Sqlite)
                .unwrap()
                .is_empty()
        );
        assert!(keyword_query(&s, Dialect::Postgres).is_err());
    }

    #[test]
    fn the_postgres_query_uses_the_indexed_expression() {
        let ddl = text_index_statements(&spec(), Dialect::Postgres).unwrap();
        let q = keyword_query(&spec(), Dialect::Postgres).unwrap();
        let expr = "jsonb_to_tsvector('simple', \"attrs\", '[\"string\",\"numeric\"]')";
        assert!(
            ddl[0].contains(expr) && q.contains(&format!("{expr} @@ q")),
            "{ddl:?} {q}"
        );
        assert!(q.contains("AND NOT \"deleted\""));
    }

    #[test]
    fn match_expressions_or_the_terms() {
        let terms = vec!["jane".to_string(), "1970".to_string()];
        assert_eq!(match_expression(&terms, Dialect::Postgres), "jane | 1970");
        assert_eq!(
            match_expression(&terms, Dialect::Sqlite),
            "\"jane\" OR \"1970\""
        );
    }
}
