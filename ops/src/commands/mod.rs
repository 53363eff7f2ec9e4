//! One module per top-level verb.
pub mod consume;
pub mod produce;
pub mod schema;
pub mod topic;
