//! Generates the gRPC code for `proto/rota/v1/*.proto` and a descriptor set for server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc unless the user points PROTOC at their own.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/rota/v1/common.proto",
        "proto/rota/v1/node.proto",
        "proto/rota/v1/scheduler.proto",
        "proto/rota/v1/worker.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("rota_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
