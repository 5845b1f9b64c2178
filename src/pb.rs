//! Generated gRPC code for `proto/rota/v1` and its descriptor set (for server reflection), plus the
//! output conversions both ends of the wire share (the API, the peer client in `dispatch`, and the
//! external workers' sessions in `worker::remote`).
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

/// JSON as a protobuf `Value` (job arguments on the wire). Cannot fail; the way back, which
/// validates, is `api::convert::json_from_pb`.
pub fn json_to_pb(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(json_to_pb).collect() }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, x)| (k.clone(), json_to_pb(x))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}
