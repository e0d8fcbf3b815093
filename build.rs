//! Compiles the Secrets Store CSI driver's provider API (proto/, vendored from
//! upstream) into Rust with protox, a protobuf compiler written in Rust, so
//! building needs no `protoc` on the machine. Only the `clients` feature has
//! the CSI provider; without it there is nothing to compile.

#[cfg(feature = "clients")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/secrets-store-csi-driver/v1alpha1/service.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}

#[cfg(not(feature = "clients"))]
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
