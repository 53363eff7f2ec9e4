//! A vector as base64 of its little-endian f32s: how the stage records it
//! and how the fold's state snapshots it (a third the size of a JSON array).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use conductor_engine::projection::{vector_from_bytes, vector_to_bytes};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackedVector(pub String);

impl PackedVector {
    pub fn pack(v: &[f32]) -> PackedVector {
        PackedVector(STANDARD.encode(vector_to_bytes(v)))
    }

    pub fn unpack(&self) -> Result<Vec<f32>, String> {
        let bytes = STANDARD
            .decode(&self.0)
            .map_err(|e| format!("a packed vector is not base64: {e}"))?;
        vector_from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let v = vec![0.5, -0.25, 1e-7, 3.0];
        assert_eq!(PackedVector::pack(&v).unpack().unwrap(), v);
        assert!(PackedVector("!!".into()).unpack().is_err());
    }
}
