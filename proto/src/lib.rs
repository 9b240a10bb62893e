//! The wire contract of the observatory, package `observatory.v1`, generated from `proto/`.
//!
//! Prost types stop at the gRPC boundary: only this crate and `observatory-grpc` (plus clients
//! and tests) use them; the domain never derives prost.

pub mod bounded;

/// Generated: prost messages, tonic clients and servers.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("observatory.v1");
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/observatory_descriptor.bin"));

/// The error details the server sends (`google.rpc.Status`, `google.rpc.BadRequest`,
/// `RetryInfo`...) as a `FileDescriptorSet` for reflection, under their canonical names
/// (`google/rpc/error_details.proto`, `google/rpc/status.proto`), so that grpcurl and other
/// reflection clients decode an error's details.
pub fn error_details_descriptors() -> Result<prost_types::FileDescriptorSet, prost::DecodeError> {
    let mut set: prost_types::FileDescriptorSet = prost::Message::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)?;
    let canonical = |name: &str| match name {
        "error_details.proto" | "status.proto" => format!("google/rpc/{name}"),
        other => other.to_owned(),
    };
    for file in &mut set.file {
        file.name = file.name.as_deref().map(canonical);
        for dependency in &mut file.dependency {
            *dependency = canonical(dependency);
        }
    }
    Ok(set)
}
