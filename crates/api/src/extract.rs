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
            serde_path_to_error::deserialize(value)
                .map(JsonBody)
                .map_err(|e| {
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
                    .into()
                })
        })
    }
}
