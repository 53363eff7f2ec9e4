//! Kafka failures as [`LogError::Kafka`]: a readable detail (with a hint for
//! the usual causes), the rdkafka error kept as the source, and whether a
//! retry can help.

use crate::log::LogError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// `LogError::Kafka` for `operation` with a readable detail.
pub(crate) fn kafka_error(operation: impl Into<String>, error: &KafkaError) -> LogError {
    let mut detail = error.to_string();
    if let Some(code) = error.rdkafka_error_code() {
        let hint = match code {
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut => Some("is the broker running and reachable?"),
            RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::InvalidRequest => {
                Some("the broker does not support this request")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            detail = format!("{detail} (hint: {hint})");
        }
    }
    LogError::Kafka {
        operation: operation.into(),
        detail,
        retryable: !error.rdkafka_error_code().is_some_and(is_permanent),
        source: Some(std::sync::Arc::new(error.clone())),
    }
}

/// Broker answers that a retry of the same request can't change.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::PolicyViolation
    )
}

/// `LogError::Kafka` from a plain message.
pub(crate) fn kafka_detail(operation: impl Into<String>, detail: impl Into<String>) -> LogError {
    LogError::Kafka {
        operation: operation.into(),
        detail: detail.into(),
        retryable: true,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_a_retry_cannot_change_are_not_retryable() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        let e = kafka_error("produce", &refused);
        assert_eq!(e.kind(), crate::log::LogErrorKind::User, "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the rdkafka error is kept"
        );
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(
            kafka_error("produce", &down).kind(),
            crate::log::LogErrorKind::Transient
        );
    }
}
