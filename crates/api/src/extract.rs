//! Request extractors that report bad input in the API's error shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use crate::errors::ApiError;

/// A JSON body like `web::Json`, but a field of the wrong type is reported by name
/// (`"field": "password"`), which serde_json's own errors do not do.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Content type, size limit and syntax are checked by `web::Json` (see `JsonConfig`).
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            Ok(deserialize_naming_fields(value).map(JsonBody)?)
        })
    }
}

/// Deserializes a JSON object (every body of this API is one: serde would also read a
/// struct from an array), an error naming the field to blame.
pub fn deserialize_naming_fields<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected a JSON object".to_owned(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ApiError::BadRequest(format!("invalid JSON body: {message}"))
        } else {
            ApiError::Invalid {
                field: path,
                message,
            }
        }
    })
}

/// A body that may be left out: `None` when empty or JSON `null`, else JSON as
/// [`JsonBody`] reads it.
pub fn optional_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    // JSON's own whitespace only (a form feed is not, and is a 400 like any bad JSON).
    if body
        .iter()
        .all(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    if value.is_null() {
        return Ok(None);
    }
    deserialize_naming_fields(value).map(Some)
}
