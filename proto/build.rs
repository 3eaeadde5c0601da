//! Compiles the protobuf files with a vendored protoc, so no system protoc is needed.
//! Set PROTOC to use another protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    let files = [
        "proto/upsilon/v1/power.proto",
        "proto/upsilon/v1/admin.proto",
        "proto/upsilon/v1/raft.proto",
        "proto/upsilon/v1/bridge.proto",
    ];
    tonic_prost_build::configure().compile_with_config(config, &files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
