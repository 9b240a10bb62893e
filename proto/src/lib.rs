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
