//! Compiles `observatory/v1/*.proto` with protox (pure Rust, no system protoc) and generates
//! prost messages plus tonic clients and servers, and a file descriptor set for reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "observatory/v1/common.proto",
        "observatory/v1/reference.proto",
        "observatory/v1/registry.proto",
        "observatory/v1/reports.proto",
        "observatory/v1/audit.proto",
        "observatory/v1/exchange.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("observatory_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Type names, so the codec knows which message it decodes; the codec bounds the repeated
    // fields of requests before decoding them (src/bounded.rs).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::bounded::BoundedCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
