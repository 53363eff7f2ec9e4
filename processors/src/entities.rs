//! The `entities` projection: entity and relationship events folded into the
//! `entities` and `relationships` tables, tenant-scoped and version-guarded.
//!
//! Stateless: every effect is a full row keyed by (tenant, id) with the
//! event's version, so the store's version guard alone makes replays and
//! out-of-order older versions harmless. Deletes are soft (`deleted = true`,
//! attributes cleared), which also stops a late older upsert from
//! resurrecting the entity.

use conductor_engine::processor::spec::{check_table_name, static_table_name};
use conductor_engine::processor::{Effect, Processor, ProcessorError, ProcessorSpec};
use conductor_engine::projection::{
    ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec, TextIndex,
};
use conductor_engine::runtime::config::ConfigProblem;
use conductor_schemas::{Attributes, Event, EventData};

pub const ENTITIES_TABLE: &str = "entities";
pub const RELATIONSHIPS_TABLE: &str = "relationships";

fn col(name: &'static str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec { name, ty, nullable }
}

/// `entities(tenant_id, entity_id, version, kind, attributes, deleted, updated_at, last_event_id)`,
/// with a full-text index over the attributes' values (keyword search).
pub fn entities_table() -> TableSpec {
    entities_table_named(ENTITIES_TABLE)
}

/// The entities table under another name (`[processor_config] table`).
pub fn entities_table_named(name: &'static str) -> TableSpec {
    TableSpec {
        text_index: Some(TextIndex {
            json: "attributes",
            tenant: "tenant_id",
            id: "entity_id",
            deleted: Some("deleted"),
        }),
        name,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("entity_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("kind", ColumnType::Text, false),
            col("attributes", ColumnType::Json, false),
            col("deleted", ColumnType::Bool, false),
            col("updated_at", ColumnType::Timestamp, false),
            col("last_event_id", ColumnType::Text, false),
        ],
        indexes: vec![vec!["tenant_id", "kind"]],
    }
}

/// `relationships(tenant_id, rel_id, version, src_id, dst_id, kind, attributes, deleted, updated_at, last_event_id)`.
pub fn relationships_table() -> TableSpec {
    relationships_table_named(RELATIONSHIPS_TABLE)
}

/// The relationships table under another name (`[processor_config] relationships_table`).
pub fn relationships_table_named(name: &'static str) -> TableSpec {
    TableSpec {
        text_index: None,
        name,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("rel_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("src_id", ColumnType::Text, false),
            col("dst_id", ColumnType::Text, false),
            col("kind", ColumnType::Text, false),
            col("attributes", ColumnType::Json, false),
            col("deleted", ColumnType::Bool, false),
            col("updated_at", ColumnType::Timestamp, false),
            col("last_event_id", ColumnType::Text, false),
        ],
        indexes: vec![vec!["tenant_id", "src_id"], vec!["tenant_id", "dst_id"]],
    }
}

/// The tables the entities fold writes: `entities` and `relationships` unless
/// configured otherwise (a second projection beside the first, e.g.
/// `entities_v2` for a zero-downtime migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTables {
    pub entities: &'static str,
    pub relationships: &'static str,
}

impl Default for EntityTables {
    fn default() -> Self {
        EntityTables {
            entities: ENTITIES_TABLE,
            relationships: RELATIONSHIPS_TABLE,
        }
    }
}

impl EntityTables {
    /// Their specs.
    pub fn specs(&self) -> Vec<TableSpec> {
        vec![
            entities_table_named(self.entities),
            relationships_table_named(self.relationships),
        ]
    }
}

/// The entities fold.
#[derive(Debug, Default)]
pub struct EntitiesProcessor {
    tables: EntityTables,
}

impl EntitiesProcessor {
    /// The fold into `tables`.
    pub fn new(tables: EntityTables) -> Self {
        EntitiesProcessor { tables }
    }
}

/// The `entities` spec: no configuration (an empty `[processor_config]`).
pub struct EntitiesSpec;

/// `[processor_config]` of `entities`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntitiesConfig {
    /// The entities table (`entities`). Another name makes a second
    /// projection beside the first — `entities_v2` while a new version is
    /// built next to the one being served.
    pub table: String,
    /// The relationships table (`relationships`).
    pub relationships_table: String,
    /// Also project entities and relationships as a graph: a node per entity
    /// (`(:Entity {id: "tenant/subject", tenant_id, entity_type, …attributes})`)
    /// and a relationship per relationship (`-[:KNOWS {id: "tenant/rel_id", …}]->`),
    /// in the tables `entity_graph_nodes` / `entity_graph_edges` and, when
    /// `conductor run` has a Neo4j URI, in Neo4j.
    pub graph: bool,
    /// The label of entity nodes in the graph.
    pub graph_node_label: String,
}

impl Default for EntitiesConfig {
    fn default() -> Self {
        EntitiesConfig {
            table: ENTITIES_TABLE.into(),
            relationships_table: RELATIONSHIPS_TABLE.into(),
            graph: false,
            graph_node_label: "Entity".into(),
        }
    }
}

impl ProcessorSpec for EntitiesSpec {
    type Config = EntitiesConfig;
    const NAME: &'static str = "entities";
    const DESCRIPTION: &'static str =
        "EntityUpserted / EntityDeleted / RelationshipUpserted → entities and relationships tables";

    fn check(config: &EntitiesConfig) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if config.graph_node_label.trim().is_empty() {
            problems.push(ConfigProblem {
                key: "graph_node_label".into(),
                message: "must not be empty".into(),
                hint: Some("the default is \"Entity\"".into()),
            });
        }
        problems.extend(check_table_name("table", &config.table));
        problems.extend(check_table_name(
            "relationships_table",
            &config.relationships_table,
        ));
        if config.table == config.relationships_table {
            problems.push(ConfigProblem {
                key: "relationships_table".into(),
                message: format!("is the same table as `table` ({})", config.table),
                hint: Some("entities and relationships need a table each".into()),
            });
        }
        problems
    }

    fn tables(config: &EntitiesConfig) -> Vec<TableSpec> {
        let mut tables = config_tables(config).specs();
        if config.graph {
            tables.extend(crate::entity_graph::ENTITY_GRAPH.tables());
        }
        tables
    }

    fn build(config: EntitiesConfig) -> Box<dyn Processor> {
        let fold = EntitiesProcessor::new(config_tables(&config));
        if config.graph {
            Box::new(crate::entity_graph::EntityGraphProcessor::new(
                fold,
                config.graph_node_label,
            ))
        } else {
            Box::new(fold)
        }
    }
}

/// The configured table names (checked by `check` before this runs).
fn config_tables(config: &EntitiesConfig) -> EntityTables {
    EntityTables {
        entities: static_table_name(&config.table),
        relationships: static_table_name(&config.relationships_table),
    }
}

fn attributes_json(a: &Attributes) -> SqlValue {
    SqlValue::Json(serde_json::to_value(a).unwrap_or_default())
}

/// An `entities` row; a delete is the same row with `deleted` set and the
/// attributes cleared.
fn entity_row(
    table: &'static str,
    event: &Event,
    entity_type: &str,
    version: i64,
    attributes: SqlValue,
    deleted: bool,
) -> Result<RowUpsert, ProcessorError> {
    check_version(version)?;
    let meta = &event.meta;
    Ok(RowUpsert {
        table,
        key: vec![meta.tenant.clone(), meta.subject.clone()],
        version,
        values: vec![
            SqlValue::Text(entity_type.to_string()),
            attributes,
            SqlValue::Bool(deleted),
            SqlValue::Timestamp(meta.occurred_at),
            SqlValue::Text(meta.event_id.clone()),
        ],
        deleted,
    })
}

fn check_version(version: i64) -> Result<(), ProcessorError> {
    if version < 0 {
        return Err(ProcessorError::invalid_input(format!(
            "data.version must not be negative, got {version}"
        )));
    }
    Ok(())
}

impl Processor for EntitiesProcessor {
    fn name(&self) -> &str {
        "entities"
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.tables.specs()
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        let meta = &event.meta;
        let updated_at = SqlValue::Timestamp(meta.occurred_at);
        let event_id = SqlValue::Text(meta.event_id.clone());
        let upsert = match &event.data {
            EventData::EntityUpserted(e) => {
                let attributes = attributes_json(&e.attributes);
                entity_row(
                    self.tables.entities,
                    event,
                    &e.entity_type,
                    e.version,
                    attributes,
                    false,
                )?
            }
            EventData::EntityDeleted(e) => {
                let cleared = SqlValue::Json(serde_json::json!({}));
                entity_row(
                    self.tables.entities,
                    event,
                    &e.entity_type,
                    e.version,
                    cleared,
                    true,
                )?
            }
            EventData::RelationshipUpserted(r) => {
                check_version(r.version)?;
                RowUpsert {
                    table: self.tables.relationships,
                    key: vec![meta.tenant.clone(), r.rel_id.clone()],
                    version: r.version,
                    values: vec![
                        SqlValue::Text(r.src.clone()),
                        SqlValue::Text(r.dst.clone()),
                        SqlValue::Text(r.rel_type.clone()),
                        attributes_json(&r.attributes),
                        SqlValue::Bool(false),
                        updated_at,
                        event_id,
                    ],
                    deleted: false,
                }
            }
            other => {
                return Err(ProcessorError::invalid_input(format!(
                    "the entities topology folds EntityUpserted, EntityDeleted and RelationshipUpserted, not {}",
                    other.kind()
                )));
            }
        };
        Ok(vec![Effect::Upsert(upsert)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_engine::testing::check_processor_contract;
    use conductor_schemas::codec::decode_json;

    fn ev(json: &str) -> Event {
        decode_json(json.as_bytes(), None).unwrap()
    }

    fn samples() -> Vec<Event> {
        vec![
            ev(
                r#"{"tenant":"acme","kind":"EntityUpserted","subject":"p1","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":1,"attributes":{"given_name":"Ada"}}}"#,
            ),
            ev(
                r#"{"tenant":"acme","kind":"EntityDeleted","subject":"p1","occurred_at":"2026-02-01T12:00:01Z","data":{"entity_type":"Person","version":2}}"#,
            ),
            ev(
                r#"{"tenant":"acme","kind":"RelationshipUpserted","subject":"r1","occurred_at":"2026-02-01T12:00:02Z","data":{"rel_id":"r1","src":"p1","dst":"p2","rel_type":"KNOWS","version":1,"attributes":{"since":2001}}}"#,
            ),
            ev(
                r#"{"tenant":"acme","kind":"UsageRecorded","subject":"u","occurred_at":"2026-02-01T12:00:03Z","data":{"usage_kind":"events","quantity":1}}"#,
            ),
        ]
    }

    #[test]
    fn meets_the_processor_contract() {
        check_processor_contract(EntitiesProcessor::default, &samples());
    }

    #[test]
    fn folds_each_kind_into_its_table() {
        let mut p = EntitiesProcessor::default();
        let s = samples();
        let Effect::Upsert(u) = &p.process(&s[0]).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (u.table, u.key.clone(), u.version, u.deleted),
            (ENTITIES_TABLE, vec!["acme".into(), "p1".into()], 1, false)
        );
        let Effect::Upsert(d) = &p.process(&s[1]).unwrap()[0] else {
            panic!()
        };
        assert!(d.deleted);
        assert_eq!(d.values[2], SqlValue::Bool(true));
        let Effect::Upsert(r) = &p.process(&s[2]).unwrap()[0] else {
            panic!()
        };
        assert_eq!(r.table, RELATIONSHIPS_TABLE);
        assert_eq!(r.values[0], SqlValue::Text("p1".into()));
    }

    #[test]
    fn refuses_other_event_kinds_as_invalid_input() {
        let err = EntitiesProcessor::default()
            .process(&samples()[3])
            .unwrap_err();
        assert_eq!(
            err.kind,
            conductor_engine::processor::ProcessorErrorKind::InvalidInput
        );
        assert!(err.message.contains("UsageRecorded"));
    }

    #[test]
    fn refuses_configuration_it_does_not_know() {
        let mut t = toml::Table::new();
        t.insert("colour".into(), toml::Value::String("blue".into()));
        let problems = crate::find("entities").unwrap().validate(&t);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "processor_config.colour");
    }

    #[test]
    fn table_names_come_from_the_config() {
        let entities = crate::find("entities").unwrap();
        let mut v2 = toml::Table::new();
        v2.insert("table".into(), "entities_v2".into());
        v2.insert("relationships_table".into(), "relationships_v2".into());
        let names: Vec<&str> = entities
            .tables(&v2)
            .unwrap()
            .iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["entities_v2", "relationships_v2"]);
        let mut p = entities.build(&v2).unwrap();
        let s = samples();
        let Effect::Upsert(u) = &p.process(&s[0]).unwrap()[0] else {
            panic!()
        };
        assert_eq!(u.table, "entities_v2");
        let Effect::Upsert(r) = &p.process(&s[2]).unwrap()[0] else {
            panic!()
        };
        assert_eq!(r.table, "relationships_v2");

        let mut bad = toml::Table::new();
        bad.insert("table".into(), "Entities-V2".into());
        bad.insert("relationships_table".into(), "Entities-V2".into());
        let keys: Vec<String> = entities.validate(&bad).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "processor_config.table",
                "processor_config.relationships_table",
                "processor_config.relationships_table"
            ]
        );
    }
}
