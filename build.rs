//! Generates the gRPC code and the file descriptor set (served by reflection)
//! from `proto/`, and the etcd client the bench compares with. Uses a
//! vendored `protoc`, so no system install is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Field values are carried as `bytes::Bytes`: cloning a cached session is
    // then a reference-count bump, not a copy of every value.
    config.bytes(["."]);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("sessiond_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("proto/sessiond/v1/session.proto"),
                PathBuf::from("proto/sessiond/v1/admin.proto"),
            ],
            &[PathBuf::from("proto"), well_known],
        )?;
    // The part of etcd's API `sessiond-bench` drives beside sessiond (client
    // only; not served, not in the descriptor set).
    let bench = PathBuf::from("src/bin/sessiond-bench/proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(
            config,
            &[
                bench.join("etcdserverpb.proto"),
                bench.join("v3lockpb.proto"),
            ],
            &[bench],
        )?;
    Ok(())
}
