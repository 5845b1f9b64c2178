//! The .proto files follow buf-lint-style conventions (buf itself cannot be installed here):
//! a versioned package, one request and one response message per RPC named after it, enums with an
//! `_UNSPECIFIED` zero value prefixed by the enum's name, and a comment on every service, RPC,
//! message, enum and field (the contract other languages code against).
use prost::Message;
use prost_types::FileDescriptorSet;

#[test]
fn protos_follow_the_conventions() {
    let set = FileDescriptorSet::decode(rota::pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut problems = Vec::new();
    let files: Vec<_> = set.file.iter().filter(|f| f.package() == "rota.v1").collect();
    assert_eq!(files.len(), 4, "common, node, scheduler, worker");
    let mut used_types = std::collections::HashMap::<String, String>::new();
    for f in &files {
        let info = f.source_code_info.clone().unwrap_or_default();
        let documented =
            |path: &[i32]| info.location.iter().any(|l| l.path == path && !l.leading_comments().trim().is_empty());
        for (si, s) in f.service.iter().enumerate() {
            if !documented(&[6, si as i32]) {
                problems.push(format!("service {} has no comment", s.name()));
            }
            for (mi, m) in s.method.iter().enumerate() {
                if !documented(&[6, si as i32, 2, mi as i32]) && !m.server_streaming() {
                    // Streaming or not, an RPC says what it does.
                    problems.push(format!("rpc {}.{} has no comment", s.name(), m.name()));
                }
                let (req, resp) = (format!(".rota.v1.{}Request", m.name()), format!(".rota.v1.{}Response", m.name()));
                if m.input_type() != req || m.output_type() != resp {
                    problems.push(format!("rpc {} should take {req} and return {resp}", m.name()));
                }
                for t in [m.input_type(), m.output_type()] {
                    if let Some(prev) = used_types.insert(t.to_string(), m.name().to_string()) {
                        problems.push(format!("{t} is used by both {prev} and {}", m.name()));
                    }
                }
            }
        }
        for (mi, m) in f.message_type.iter().enumerate() {
            let is_rpc_message = m.name().ends_with("Request") || m.name().ends_with("Response");
            if !is_rpc_message && !documented(&[4, mi as i32]) {
                problems.push(format!("message {} has no comment", m.name()));
            }
            for (fi, field) in m.field.iter().enumerate() {
                if !documented(&[4, mi as i32, 2, fi as i32]) {
                    problems.push(format!("field {}.{} has no comment", m.name(), field.name()));
                }
            }
        }
        for (ei, e) in f.enum_type.iter().enumerate() {
            if !documented(&[5, ei as i32]) {
                problems.push(format!("enum {} has no comment", e.name()));
            }
            let prefix = screaming_snake(e.name());
            let zero = e.value.iter().find(|v| v.number() == 0);
            if zero.map(|v| v.name().to_string()) != Some(format!("{prefix}_UNSPECIFIED")) {
                problems.push(format!("enum {} needs {prefix}_UNSPECIFIED = 0", e.name()));
            }
            for v in &e.value {
                if !v.name().starts_with(&format!("{prefix}_")) {
                    problems.push(format!("enum value {} should start with {prefix}_", v.name()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} convention problems:\n{}", problems.len(), problems.join("\n"));
}

fn screaming_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}
