//! `hashed-ngrams`: character n-grams (2 to 4, of each word padded with
//! spaces) and whole words, feature-hashed into `dims` signed dimensions and
//! L2-normalised. No model, no download, deterministic on every machine:
//! the default embedder, and the one `conductor demo` runs. Typos and
//! swapped words change few n-grams, so near-duplicates stay close.

use super::embedder::{Embedder, l2_normalise};

pub struct HashedNgrams {
    dims: usize,
    model: String,
}

/// Bumped when the features change: old vectors are then another model's.
const VERSION: u32 = 1;

impl HashedNgrams {
    pub fn new(dims: usize) -> Self {
        HashedNgrams {
            dims: dims.max(1),
            model: Self::model_id(dims),
        }
    }

    pub fn model_id(dims: usize) -> String {
        format!("hashed-ngrams-d{dims}@{VERSION}")
    }

    /// The vector of one (normalised) text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dims];
        let mut add = |feature: &[u8], weight: f32| {
            let h = fnv1a(feature);
            let i = (h % self.dims as u64) as usize;
            // The sign bit spreads collisions around zero instead of piling up.
            v[i] += if h >> 63 == 0 { weight } else { -weight };
        };
        let mut padded = Vec::with_capacity(32);
        for word in text.split_whitespace() {
            let mut w = Vec::with_capacity(word.len() + 2);
            w.push(b'w');
            w.extend_from_slice(word.as_bytes());
            add(&w, 1.0);
            padded.clear();
            padded.push(' ');
            padded.extend(word.chars());
            padded.push(' ');
            let mut buf = [0u8; 20];
            for n in 2..=4 {
                for gram in padded.windows(n) {
                    let mut len = 1;
                    buf[0] = b'0' + n as u8;
                    for c in gram {
                        len += c.encode_utf8(&mut buf[len..]).len();
                    }
                    add(&buf[..len], 1.0);
                }
            }
        }
        l2_normalise(&mut v);
        v
    }
}

/// 64-bit FNV-1a: stable across machines and releases (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Embedder for HashedNgrams {
    fn model(&self) -> &str {
        &self.model
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embeddings::embedder::cosine;

    #[test]
    fn vectors_are_unit_length_deterministic_and_sized() {
        let e = HashedNgrams::new(64);
        let v = e.vector("ada lovelace 12 main st");
        assert_eq!(v.len(), 64);
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(v, e.vector("ada lovelace 12 main st"));
        assert!(e.vector("").iter().all(|x| *x == 0.0));
        assert_eq!(e.model(), "hashed-ngrams-d64@1");
    }

    #[test]
    fn a_typo_stays_closer_than_another_person() {
        let e = HashedNgrams::new(256);
        let a = e.vector("katherine johnson 1918 white sulphur springs");
        let typo = e.vector("katharine jonhson 1918 white sulphur springs");
        let other = e.vector("dorothy vaughan 1910 kansas city");
        let (near, far) = (cosine(&a, &typo), cosine(&a, &other));
        assert!(
            near > 0.6 && far < 0.3 && near > far + 0.4,
            "near {near}, far {far}"
        );
    }

    #[test]
    fn multibyte_text_is_fine() {
        let e = HashedNgrams::new(32);
        let v = e.vector("zoë ångström 東京");
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
