//! The one error type of the HTTP API, and its mapping to an HTTP status and an envelope code
//! (the codes of docs/api.md). Every refusal the edge gives goes through [`AppError::status`] and
//! [`AppError::code`]; nothing else picks a status.

use hyper::StatusCode;

/// The services the edge depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Redis,
    Mysql,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::Redis => "Redis",
            Dependency::Mysql => "MySQL",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed input: a missing field, a non-numeric id, a body that is not JSON.
    #[error("bad parameter: {0}")]
    BadParam(String),
    /// No session cookie/bearer token, or it expired.
    #[error("session missing or expired; please log in")]
    SessionMissing,
    #[error("mobile number is not valid")]
    BadMobile,
    #[error("mobile number not registered")]
    MobileNotFound,
    #[error("wrong password")]
    WrongPassword,
    #[error("sold out")]
    SoldOut,
    #[error("you have already bought this item")]
    Duplicate,
    #[error("the sale has not started yet")]
    NotStarted { starts_in_ms: i64 },
    #[error("the sale has ended")]
    Ended,
    #[error("the request path is not valid; fetch a new one")]
    BadPath,
    #[error("wrong or expired captcha")]
    WrongCaptcha,
    #[error("too many requests; retry in {retry_after_ms} ms")]
    TooManyRequests { retry_after_ms: u64 },
    #[error("not found")]
    NotFound,
    #[error("admin token missing or wrong")]
    Forbidden,
    #[error("the order was closed unpaid")]
    OrderClosed,
    #[error("request body too large")]
    TooLarge,
    #[error("too many failed logins; try again after the wait given")]
    TooManyLogins { retry_after_ms: u64 },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the body must be JSON, sent as Content-Type: application/json")]
    NotJson,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A dependency is unreachable (or its circuit breaker is open): the client may retry.
    #[error("service temporarily unavailable ({0} unreachable)")]
    Unavailable(Dependency),
    /// Anything unexpected; the context is logged, the client sees a generic message.
    #[error("server error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            BadParam(_) | BadMobile | WrongCaptcha => StatusCode::BAD_REQUEST,
            SessionMissing | MobileNotFound | WrongPassword => StatusCode::UNAUTHORIZED,
            Forbidden | BadPath => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Duplicate | OrderClosed => StatusCode::CONFLICT,
            SoldOut | Ended => StatusCode::GONE,
            NotStarted { .. } => StatusCode::TOO_EARLY,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TooManyRequests { .. } | TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The envelope's `code` (docs/api.md, "Codes").
    pub fn code(&self) -> i64 {
        use AppError::*;
        match self {
            Internal(_) | Unavailable(_) => 500100,
            BadParam(_) | TooLarge | BodyTimeout | NotJson | MethodNotAllowed => 500101,
            SessionMissing => 500210,
            BadMobile => 500213,
            MobileNotFound => 500214,
            WrongPassword => 500215,
            NotFound => 500404,
            Forbidden => 500403,
            SoldOut => 500500,
            Duplicate => 500501,
            NotStarted { .. } | Ended => 500502,
            BadPath => 500503,
            WrongCaptcha => 500504,
            TooManyRequests { .. } | TooManyLogins { .. } => 500505,
            OrderClosed => 500506,
        }
    }
}

impl From<redis::RedisError> for AppError {
    fn from(e: redis::RedisError) -> Self {
        if crate::redis_conn::is_unavailable(&e) {
            tracing::warn!(error = %e, "redis unavailable");
            AppError::Unavailable(Dependency::Redis)
        } else {
            AppError::Internal(anyhow::Error::new(e).context("redis"))
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "mysql unavailable");
                AppError::Unavailable(Dependency::Mysql)
            }
            other => AppError::Internal(anyhow::Error::new(other).context("mysql")),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_4xx_and_a_nonzero_code() {
        let all = [
            AppError::BadParam("x".into()),
            AppError::SessionMissing,
            AppError::BadMobile,
            AppError::MobileNotFound,
            AppError::WrongPassword,
            AppError::SoldOut,
            AppError::Duplicate,
            AppError::NotStarted { starts_in_ms: 1 },
            AppError::Ended,
            AppError::BadPath,
            AppError::WrongCaptcha,
            AppError::TooManyRequests { retry_after_ms: 5 },
            AppError::NotFound,
            AppError::Forbidden,
            AppError::TooLarge,
            AppError::TooManyLogins { retry_after_ms: 5 },
            AppError::BodyTimeout,
            AppError::NotJson,
            AppError::OrderClosed,
            AppError::MethodNotAllowed,
        ];
        for e in all {
            assert!(e.status().is_client_error(), "{e:?}");
            assert_ne!(e.code(), 0);
        }
        assert_eq!(
            AppError::Unavailable(Dependency::Redis).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
