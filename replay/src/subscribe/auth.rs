//! Bearer tokens: HS256 JWTs with claims `tenant`, `scopes` (a list, or a
//! space-separated `scope` string), `exp`, and an optional QoS `tier`
//! (`gold` | `silver` | `bronze`, default `silver`). Subscribing needs the
//! scope `changes:read`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The scope a subscription needs.
pub const SCOPE_CHANGES_READ: &str = "changes:read";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// Delivery tiers (see `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Gold,
    Silver,
    Bronze,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub scopes: Vec<String>,
    pub tier: Tier,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required (Authorization: Bearer <JWT>)")]
    Missing,
    #[error("the bearer token is not valid: {0}")]
    Invalid(String),
    #[error("the bearer token has expired")]
    Expired,
    #[error("the token lacks the scope `{0}`")]
    MissingScope(String),
    #[error(
        "subscriptions are off: no token secret is configured (set CONDUCTOR_JWT_SECRET or `jwt_secret`)"
    )]
    NotConfigured,
}

/// Verifies tokens signed with one HS256 secret.
#[derive(Clone)]
pub struct Authenticator {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl Authenticator {
    /// `None`: no secret configured; every token is refused with a message
    /// saying how to turn subscriptions on.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
        validation.leeway = 5;
        Authenticator {
            key: secret.map(DecodingKey::from_secret),
            validation,
        }
    }

    /// Verifies `token` and requires `scope`.
    pub fn verify(&self, token: Option<&str>, scope: &str) -> Result<Principal, AuthError> {
        let key = self.key.as_ref().ok_or(AuthError::NotConfigured)?;
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Invalid(e.to_string()),
                }
            })?;
        let c = data.claims;
        if c.tenant.is_empty() {
            return Err(AuthError::Invalid("the `tenant` claim is empty".into()));
        }
        let mut scopes = c.scopes;
        if let Some(s) = c.scope {
            scopes.extend(s.split_whitespace().map(str::to_string));
        }
        if !scopes.iter().any(|s| s == scope) {
            return Err(AuthError::MissingScope(scope.to_string()));
        }
        let tier = match c.tier.as_deref() {
            None | Some("silver") => Tier::Silver,
            Some("gold") => Tier::Gold,
            Some("bronze") => Tier::Bronze,
            Some(other) => {
                return Err(AuthError::Invalid(format!(
                    "unknown tier `{other}` (gold, silver or bronze)"
                )));
            }
        };
        Ok(Principal {
            tenant: c.tenant,
            scopes,
            tier,
        })
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Signs a token (the demo prints one; tests make their own).
pub fn issue(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// Seconds since the epoch, for `exp`.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-enough-length!!";

    fn claims(tenant: &str, scopes: &[&str], exp: u64) -> Claims {
        Claims {
            tenant: tenant.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scope: None,
            exp,
            tier: None,
        }
    }

    #[test]
    fn verifies_tenant_scope_expiry_and_signature() {
        let auth = Authenticator::new(Some(SECRET));
        let ok = issue(
            SECRET,
            &claims("acme", &[SCOPE_CHANGES_READ], now_secs() + 60),
        );
        let p = auth.verify(Some(&ok), SCOPE_CHANGES_READ).unwrap();
        assert_eq!((p.tenant.as_str(), p.tier), ("acme", Tier::Silver));

        let expired = issue(
            SECRET,
            &claims("acme", &[SCOPE_CHANGES_READ], now_secs() - 600),
        );
        assert_eq!(
            auth.verify(Some(&expired), SCOPE_CHANGES_READ),
            Err(AuthError::Expired)
        );
        let no_scope = issue(SECRET, &claims("acme", &["other"], now_secs() + 60));
        assert!(matches!(
            auth.verify(Some(&no_scope), SCOPE_CHANGES_READ),
            Err(AuthError::MissingScope(_))
        ));
        let forged = issue(
            b"another-secret-another-secret!!!",
            &claims("acme", &[SCOPE_CHANGES_READ], now_secs() + 60),
        );
        assert!(matches!(
            auth.verify(Some(&forged), SCOPE_CHANGES_READ),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            auth.verify(None, SCOPE_CHANGES_READ),
            Err(AuthError::Missing)
        );
        assert_eq!(
            Authenticator::new(None).verify(Some(&ok), SCOPE_CHANGES_READ),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn reads_bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
