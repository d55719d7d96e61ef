//! Compiles `proto/reprise/v1/exchange.proto` with protox (no `protoc`
//! needed) into prost types, and writes a table of each message's fields
//! that the codec uses to find fields a newer schema added.

use std::fmt::Write as _;
use std::path::PathBuf;

use prost_types::field_descriptor_proto::{Label, Type};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("../../proto");
    let file = proto_root.join("reprise/v1/exchange.proto");
    println!("cargo:rerun-if-changed={}", file.display());

    let fds = protox::compile([&file], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("schema_table.rs"), field_table(&fds)?)?;
    std::fs::write(
        out_dir.join("reprise_v1.fds"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let mut config = prost_build::Config::new();
    // Bodies and messages share the buffer they were decoded from; small
    // fields (ids, header values) are cheaper copied than reference-counted.
    config.bytes([
        ".reprise.v1.Request.body",
        ".reprise.v1.Response.body",
        ".reprise.v1.StreamMessage.data",
        ".reprise.v1.UnknownFields.fields",
    ]);
    config.compile_fds(fds)?;
    Ok(())
}

/// Renders `static MESSAGES: &[MessageShape]`: for each message, its field
/// numbers and, for message-typed fields, the index of their message type.
fn field_table(fds: &prost_types::FileDescriptorSet) -> Result<String, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            names.push(format!(".{package}.{}", message.name()));
        }
    }
    let mut out = String::from("static MESSAGES: &[MessageShape] = &[\n");
    for file in &fds.file {
        for message in &file.message_type {
            writeln!(
                out,
                "    MessageShape {{ name: {:?}, fields: &[",
                message.name()
            )?;
            for field in &message.field {
                let nested = if field.r#type() == Type::Message {
                    let index = names
                        .iter()
                        .position(|n| n == field.type_name())
                        .ok_or_else(|| format!("unknown type {}", field.type_name()))?;
                    format!("Some({index})")
                } else {
                    "None".to_string()
                };
                writeln!(
                    out,
                    "        FieldShape {{ number: {}, message: {nested}, repeated: {} }},",
                    field.number(),
                    field.label() == Label::Repeated
                )?;
            }
            writeln!(out, "    ] }},")?;
        }
    }
    out.push_str("];\n");
    Ok(out)
}
