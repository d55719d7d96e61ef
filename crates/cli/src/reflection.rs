//! Asking a gRPC server for its schema (server reflection, v1): the
//! files that define its services, as an encoded `FileDescriptorSet`,
//! for `reprise diff --reflection`. The CLI fetches it and hands the bytes
//! to `reprise_compare::Schema`, which never opens a socket. It lives here,
//! the one place that asks, so that no library crate pulls in tonic.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// How long the whole exchange with the server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The services `url` (`http://host:port`) offers, and every file they
/// need, as an encoded `FileDescriptorSet`.
pub async fn fetch_schema(url: &str) -> anyhow::Result<Vec<u8>> {
    let bad = |reason: String| anyhow::anyhow!("gRPC server reflection at {url}: {reason}");
    tokio::time::timeout(TIMEOUT, fetch(url))
        .await
        .map_err(|_| bad(format!("no answer within {TIMEOUT:?}")))?
        .map_err(bad)
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("not a URL: {e}"))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = ServerReflectionClient::new(channel);
    let services = match ask(&mut client, MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => list.service,
        other => return Err(format!("unexpected answer to list services: {other:?}")),
    };
    let mut files: BTreeMap<String, FileDescriptorProto> = BTreeMap::new();
    for service in services
        .iter()
        .filter(|s| !s.name.starts_with("grpc.reflection."))
    {
        match ask(
            &mut client,
            MessageRequest::FileContainingSymbol(service.name.clone()),
        )
        .await?
        {
            MessageResponse::FileDescriptorResponse(found) => {
                for bytes in found.file_descriptor_proto {
                    let file = FileDescriptorProto::decode(bytes.as_slice())
                        .map_err(|e| format!("a file of {} does not decode: {e}", service.name))?;
                    files.insert(file.name().to_string(), file);
                }
            }
            MessageResponse::ErrorResponse(e) => {
                return Err(format!("{}: {}", service.name, e.error_message));
            }
            other => return Err(format!("unexpected answer for {}: {other:?}", service.name)),
        }
    }
    if files.is_empty() {
        return Err("the server lists no service".to_string());
    }
    Ok(FileDescriptorSet {
        file: files.into_values().collect(),
    }
    .encode_to_vec())
}

async fn ask(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> Result<MessageResponse, String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .map_err(|e| format!("reflection refused: {}", e.message()))?
        .into_inner();
    match answers.message().await {
        Ok(Some(ServerReflectionResponse {
            message_response: Some(answer),
            ..
        })) => Ok(answer),
        Ok(_) => Err("the server closed the reflection stream without an answer".to_string()),
        Err(e) => Err(format!("reflection failed: {}", e.message())),
    }
}
