//! Generated gRPC code for `proto/rota/v1` and its descriptor set (for server reflection), plus the
//! two time conversions both ends of the wire share (the API and the peer client in `dispatch`).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("rota.v1");

/// Encoded descriptors of every rota service, registered with server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rota_descriptor");

/// A UTC instant in milliseconds as a protobuf `Timestamp`.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// A protobuf `Timestamp` as UTC milliseconds (saturating far outside any schedule's range).
pub fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000)
}
