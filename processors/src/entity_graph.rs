//! The `entities` projection as a graph too (`[processor_config] graph =
//! true`): the `entities` fold unchanged, plus a graph mutation per event —
//! a node per entity, a relationship per relationship — into the tables
//! `entity_graph_nodes` / `entity_graph_edges` and, through the graph sink,
//! Neo4j.
//!
//! Every entity node has one label (`Entity` by default), since a
//! relationship event names its ends by subject only; the entity's type is
//! the `entity_type` property. Ids are `tenant/subject` and
//! `tenant/rel_id`, so tenants never share a node.

use crate::entities::EntitiesProcessor;
use conductor_engine::graph::{GraphMutation, GraphSpec, NodeRef, Properties};
use conductor_engine::processor::{Effect, Processor, ProcessorError};
use conductor_engine::projection::TableSpec;
use conductor_schemas::{Attributes, Event, EventData};

/// The tables of the entity graph.
pub const ENTITY_GRAPH: GraphSpec = GraphSpec::new("entity_graph_nodes", "entity_graph_edges");

/// `entities` plus its graph.
pub struct EntityGraphProcessor {
    entities: EntitiesProcessor,
    label: String,
}

impl EntityGraphProcessor {
    /// `entities` folds the rows; entity nodes get `label`.
    pub fn new(entities: EntitiesProcessor, label: impl Into<String>) -> Self {
        EntityGraphProcessor {
            entities,
            label: label.into(),
        }
    }

    fn properties(attributes: &Attributes, tenant: &str) -> Properties {
        let mut props: Properties = attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        props.insert("tenant_id".into(), tenant.into());
        props
    }

    fn mutation(&self, event: &Event) -> Option<GraphMutation> {
        let tenant = &event.meta.tenant;
        let id = |s: &str| format!("{tenant}/{s}");
        Some(match &event.data {
            EventData::EntityUpserted(e) => {
                let mut props = Self::properties(&e.attributes, tenant);
                props.insert("entity_type".into(), e.entity_type.clone().into());
                GraphMutation::upsert_node(&self.label, id(&event.meta.subject), e.version, props)
            }
            EventData::EntityDeleted(e) => {
                GraphMutation::delete_node(&self.label, id(&event.meta.subject), e.version)
            }
            EventData::RelationshipUpserted(r) => GraphMutation::upsert_edge(
                &r.rel_type,
                id(&r.rel_id),
                r.version,
                NodeRef::new(&self.label, id(&r.src)),
                NodeRef::new(&self.label, id(&r.dst)),
                Self::properties(&r.attributes, tenant),
            ),
            _ => return None,
        })
    }
}

impl Processor for EntityGraphProcessor {
    fn name(&self) -> &str {
        "entities"
    }

    fn tables(&self) -> Vec<TableSpec> {
        let mut tables = self.entities.tables();
        tables.extend(ENTITY_GRAPH.tables());
        tables
    }

    fn graph(&self) -> Option<GraphSpec> {
        Some(ENTITY_GRAPH)
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        let mut effects = self.entities.process(event)?;
        if let Some(m) = self.mutation(event) {
            // An empty relationship type or subject is the event's fault: DLQ it.
            if let Some(problem) = m.problem() {
                return Err(ProcessorError::invalid_input(problem));
            }
            effects.push(Effect::Graph(Box::new(m)));
        }
        Ok(effects)
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
                r#"{"tenant":"acme","kind":"RelationshipUpserted","subject":"r1","occurred_at":"2026-02-01T12:00:02Z","data":{"rel_id":"r1","src":"p1","dst":"p2","rel_type":"KNOWS","version":1,"attributes":{"since":2001}}}"#,
            ),
            ev(
                r#"{"tenant":"acme","kind":"EntityDeleted","subject":"p1","occurred_at":"2026-02-01T12:00:01Z","data":{"entity_type":"Person","version":2}}"#,
            ),
        ]
    }

    #[test]
    fn meets_the_processor_contract() {
        check_processor_contract(
            || EntityGraphProcessor::new(EntitiesProcessor::default(), "Entity"),
            &samples(),
        );
    }

    #[test]
    fn adds_a_node_or_relationship_to_each_entities_row() {
        let mut p = EntityGraphProcessor::new(EntitiesProcessor::default(), "Entity");
        let s = samples();
        let effects = p.process(&s[0]).unwrap();
        assert!(matches!(effects[0], Effect::Upsert(_)));
        let Effect::Graph(node) = &effects[1] else {
            panic!("{effects:?}")
        };
        let GraphMutation::UpsertNode {
            label,
            id,
            properties,
            ..
        } = node.as_ref()
        else {
            panic!("{node:?}")
        };
        assert_eq!((label.as_str(), id.as_str()), ("Entity", "acme/p1"));
        assert_eq!(properties["entity_type"], "Person");
        assert_eq!(properties["given_name"], "Ada");
        let Effect::Graph(edge) = &p.process(&s[1]).unwrap()[1] else {
            panic!()
        };
        assert_eq!(edge.record_key(), "edge/KNOWS/acme/r1");
        let Effect::Graph(gone) = &p.process(&s[2]).unwrap()[1] else {
            panic!()
        };
        assert!(gone.is_delete());
    }

    #[test]
    fn graph_tables_come_with_the_graph_option_only() {
        let entities = crate::find("entities").unwrap();
        let plain = entities.tables(&toml::Table::new()).unwrap();
        assert_eq!(plain.len(), 2);
        let mut with_graph = toml::Table::new();
        with_graph.insert("graph".into(), true.into());
        let tables = entities.tables(&with_graph).unwrap();
        assert!(tables.iter().any(|t| t.name == "entity_graph_nodes"));
        let mut empty_label = with_graph.clone();
        empty_label.insert("graph_node_label".into(), "".into());
        let problems = entities.validate(&empty_label);
        assert_eq!(problems[0].key, "processor_config.graph_node_label");
    }
}
