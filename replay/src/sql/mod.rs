//! `conductor sql`: DataFusion over topics and projection tables.
//!
//! Every topic is a table named by the topic (`"ig.ingest.entities"`, quoted
//! because of the dots; see [`topics`] for its columns) and every projection
//! table of the registered processors is a table by its own name
//! (`entities`, `relationships`). Tables are loaded only when a query names
//! them: the schema provider reads the log or the store on first use.

pub mod output;
pub mod projections;
pub mod topics;

use async_trait::async_trait;
use conductor_engine::log::{Log, LogError};
use conductor_engine::projection::TableSpec;
use conductor_engine::store::{ProjectionStore, StoreError};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query itself: a parse or planning error, an unknown table or column.
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        SqlError::Query(e.to_string())
    }
}

/// The tables a query may name.
struct ConductorSchema {
    log: Arc<dyn Log>,
    store: Option<Arc<dyn ProjectionStore>>,
    topics: Vec<String>,
    projections: Vec<TableSpec>,
}

impl std::fmt::Debug for ConductorSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConductorSchema")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

fn to_df(e: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for ConductorSchema {
    fn table_names(&self) -> Vec<String> {
        self.topics
            .iter()
            .cloned()
            .chain(self.projections.iter().map(|t| t.name.to_string()))
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let (schema, batches) = if self.topics.iter().any(|t| t == name) {
            topics::read_topic(self.log.clone(), name)
                .await
                .map_err(to_df)?
        } else if let Some(spec) = self.projections.iter().find(|t| t.name == name) {
            let Some(store) = &self.store else {
                return Err(to_df(SqlError::Query(format!(
                    "table `{name}` is a projection, and no projection store is configured"
                ))));
            };
            projections::read_table(store.as_ref(), spec)
                .await
                .map_err(to_df)?
        } else {
            return Ok(None);
        };
        let table = MemTable::try_new(schema, vec![batches])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.topics.iter().any(|t| t == name) || self.projections.iter().any(|t| t.name == name)
    }
}

/// What a query returned: its schema (also when there are no rows) and rows.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A DataFusion session over the log's topics and the store's projections.
pub struct SqlContext {
    ctx: SessionContext,
    tables: Vec<String>,
}

impl SqlContext {
    /// `projections` are the tables the store may hold (the registered
    /// processors' tables); `store` is `None` when there is none to read.
    pub async fn new(
        log: Arc<dyn Log>,
        store: Option<Arc<dyn ProjectionStore>>,
        projections: Vec<TableSpec>,
    ) -> Result<Self, SqlError> {
        let topics = log.list_topics().await?;
        let schema = ConductorSchema {
            log,
            store,
            topics,
            projections,
        };
        let tables = schema.table_names();
        let ctx = SessionContext::new();
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| SqlError::Internal("DataFusion has no default catalog".into()))?;
        catalog.register_schema("public", Arc::new(schema))?;
        Ok(SqlContext { ctx, tables })
    }

    /// Names a query may use as tables.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        let frame = self.ctx.sql(sql).await.map_err(|e| self.explain(e))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryResult { schema, batches })
    }

    /// Adds the table list to "table not found" errors.
    fn explain(&self, e: DataFusionError) -> SqlError {
        let text = e.to_string();
        if text.contains("not found") && text.contains("table") {
            SqlError::Query(format!(
                "{text}\n  tables: {} (quote names with dots: \"ig.ingest.entities\")",
                self.tables.join(", ")
            ))
        } else {
            SqlError::Query(text)
        }
    }
}
