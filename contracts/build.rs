//! Compiles the gRPC contracts with a pure-Rust protobuf compiler, so building needs no `protoc`.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["auth.proto"], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection, so grpcurl works without the .proto files.
    std::fs::write(
        out_dir.join("auth_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
