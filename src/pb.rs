//! Generated gRPC code for `proto/rota/v1` and its descriptor set (for server reflection). No hand-written code.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("rota.v1");

/// Encoded descriptors of every rota service, registered with server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rota_descriptor");
