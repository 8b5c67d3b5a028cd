//! The one mapping from errors to responses: RFC 9457 problem+json with a stable
//! kebab-case `code`. A 5xx body never carries internal details.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::{rfc3339, AppError};
use crate::store::StoreError;

/// An error response on the native face.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    #[serde(skip)]
    status: StatusCode,
    #[serde(rename = "status")]
    status_code: u16,
    code: &'static str,
    detail: String,
    /// Extension members (RFC 9457 section 3.2), e.g. a revocation's date and reason.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with `status`, stable `code` and a human `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:certd:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status,
            status_code: status.as_u16(),
            code,
            detail: detail.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status_code, self.code, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            b.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        let json = serde_json::to_vec(self).unwrap_or_default();
        b.content_type("application/problem+json").body(json)
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Problem {
        match &e {
            AppError::InvalidInput(ca) => {
                Problem::new(StatusCode::BAD_REQUEST, ca.code(), ca.to_string())
            }
            AppError::UnknownEnvironment(env) => Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-environment",
                format!("environment {env} does not exist"),
            ),
            AppError::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, detail.clone())
            }
            AppError::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", detail.clone())
            }
            AppError::NotFound(detail) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", detail.clone())
            }
            AppError::Revoked {
                certname,
                revoked_at,
                reason,
            } => Problem::new(StatusCode::GONE, "revoked", e.to_string())
                .with("certname", certname.to_string())
                .with("revoked_at", rfc3339(*revoked_at))
                .with("revocation_reason", *reason),
            AppError::RequestInvalid { certname, reason } => {
                Problem::new(StatusCode::GONE, "request-invalid", e.to_string())
                    .with("certname", certname.to_string())
                    .with("reason", reason.clone())
            }
            AppError::CsrRejected(ca) => {
                Problem::new(StatusCode::CONFLICT, ca.code(), ca.to_string())
            }
            AppError::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, detail.clone())
            }
            AppError::Busy => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
            AppError::TooSoon { detail, .. } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-soon", detail.clone())
            }
            AppError::Full(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "requests-full",
                detail.clone(),
            ),
            AppError::CertificateMismatch => {
                Problem::new(StatusCode::FORBIDDEN, "certificate-mismatch", e.to_string())
            }
            AppError::Store(StoreError::Unavailable(why)) => {
                tracing::error!(error = %why, "store unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "the store cannot take writes now (see the server's log); retry later",
                )
            }
            AppError::Store(_) | AppError::Files(_) | AppError::Pki(_) | AppError::Task(_) => {
                tracing::error!(error = %e, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request; see its log",
                )
            }
        }
    }
}
