//! HAR 1.2: the document's types, import and export.
//!
//! Fields follow <http://www.softwareishard.com/blog/har-12-spec/>. Readers
//! are lenient where real tools are (missing optional fields, `null`
//! values, numbers written as floats); what HAR requires and an exchange
//! needs (`startedDateTime`, `request.method`, `request.url`,
//! `response.status`) must be there.

pub mod export;
pub mod import;

use serde::{Deserialize, Deserializer, Serialize};

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The document.
#[derive(Debug, Deserialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Debug, Deserialize)]
pub struct Log {
    /// Kept raw so that one broken entry is reported and skipped, not fatal.
    pub entries: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(rename = "startedDateTime")]
    pub started: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub time: f64,
    pub request: HarRequest,
    pub response: HarResponse,
    #[serde(default)]
    pub timings: Option<HarTimings>,
    #[serde(
        rename = "serverIPAddress",
        default,
        deserialize_with = "null_as_default"
    )]
    pub server_ip: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub connection: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub comment: String,
    #[serde(rename = "_reprise_id", default, deserialize_with = "null_as_default")]
    pub reprise_id: String,
    #[serde(
        rename = "_reprise_parent_id",
        default,
        deserialize_with = "null_as_default"
    )]
    pub reprise_parent_id: String,
    /// Chrome's note on a request that failed.
    #[serde(rename = "_error", default, deserialize_with = "null_as_default")]
    pub error: String,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
pub struct NameValue {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct HarRequest {
    pub method: String,
    pub url: String,
    #[serde(rename = "httpVersion", default, deserialize_with = "null_as_default")]
    pub http_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Vec<NameValue>,
    #[serde(rename = "queryString", default, deserialize_with = "null_as_default")]
    pub query: Vec<NameValue>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cookies: Vec<NameValue>,
    #[serde(rename = "postData", default)]
    pub post_data: Option<PostData>,
}

#[derive(Debug, Deserialize)]
pub struct PostData {
    #[serde(rename = "mimeType", default, deserialize_with = "null_as_default")]
    pub mime_type: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub params: Vec<Param>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub encoding: String,
}

#[derive(Debug, Deserialize)]
pub struct Param {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
    #[serde(rename = "fileName", default)]
    pub file_name: Option<String>,
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HarResponse {
    pub status: f64,
    #[serde(rename = "statusText", default, deserialize_with = "null_as_default")]
    pub status_text: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Vec<NameValue>,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(rename = "_error", default, deserialize_with = "null_as_default")]
    pub error: String,
}

#[derive(Debug, Deserialize)]
pub struct Content {
    #[serde(default)]
    pub size: Option<f64>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub encoding: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct HarTimings {
    pub blocked: Option<f64>,
    pub dns: Option<f64>,
    pub connect: Option<f64>,
    pub ssl: Option<f64>,
    pub send: Option<f64>,
    pub wait: Option<f64>,
    pub receive: Option<f64>,
}
