//! gRPC messages by name: a schema from `.proto` files (compiled in
//! process by protox) or an encoded `FileDescriptorSet`, so that a
//! response message is compared by field name (`$.messages[0].number`)
//! instead of field number.

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct SchemaError {
    path: PathBuf,
    reason: String,
}

/// The message types of the services compared.
#[derive(Debug, Clone)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    /// Compiles `.proto` files; imports are looked up beside each file.
    pub fn from_protos(files: &[PathBuf]) -> Result<Schema, SchemaError> {
        let first = files.first().cloned().unwrap_or_default();
        for file in files {
            if let Err(e) = std::fs::metadata(file) {
                return Err(SchemaError {
                    path: file.clone(),
                    reason: format!("cannot read: {e}"),
                });
            }
        }
        let includes: Vec<PathBuf> = files
            .iter()
            .map(|f| {
                f.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            })
            .collect();
        let set = protox::compile(files, includes).map_err(|e| SchemaError {
            path: first.clone(),
            reason: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        let pool = DescriptorPool::from_file_descriptor_set(set).map_err(|e| SchemaError {
            path: first,
            reason: e.to_string(),
        })?;
        Ok(Schema { pool })
    }

    /// Reads an encoded `FileDescriptorSet` (`protoc -o`, `buf build -o`).
    pub fn from_descriptor_set(path: &Path) -> Result<Schema, SchemaError> {
        let bad = |reason: String| SchemaError {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .map_err(|e| bad(format!("not a FileDescriptorSet: {e}")))?;
        Ok(Schema { pool })
    }

    /// An encoded `FileDescriptorSet` that came from `origin` (a server's
    /// reflection, say).
    pub fn from_encoded(bytes: &[u8], origin: &str) -> Result<Schema, SchemaError> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| SchemaError {
            path: PathBuf::from(origin),
            reason: format!("not a usable schema: {e}"),
        })?;
        Ok(Schema { pool })
    }

    /// The response type of the gRPC method at `path` (`/pkg.Svc/Method`).
    pub fn response_type(&self, path: &str) -> Option<MessageDescriptor> {
        self.method(path).map(|m| m.output())
    }

    /// The request type of the gRPC method at `path` (`/pkg.Svc/Method`):
    /// how a downstream gRPC call's messages are read.
    pub fn request_type(&self, path: &str) -> Option<MessageDescriptor> {
        self.method(path).map(|m| m.input())
    }

    fn method(&self, path: &str) -> Option<prost_reflect::MethodDescriptor> {
        let (service, method) = path.trim_start_matches('/').split_once('/')?;
        let method = method.split('?').next()?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// A message decoded by its type, with proto field names and every
    /// field present (a zero is a value, not an absence); `None` when the
    /// bytes are not a message of that type.
    pub fn decode(descriptor: &MessageDescriptor, data: &[u8]) -> Option<Value> {
        let message = DynamicMessage::decode(descriptor.clone(), data).ok()?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .ok()
    }
}
