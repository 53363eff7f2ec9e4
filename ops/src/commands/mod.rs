//! One module per top-level verb.
pub mod catalog;
pub mod consume;
pub mod demo;
pub mod dlq;
pub mod er;
pub mod lineage;
pub mod produce;
pub mod replay;
pub mod run;
pub mod schema;
pub mod schema_impact;
pub mod search;
pub mod serve;
pub mod sql;
pub mod topic;
pub mod topology;
