//! The test bed's fake Kubernetes API server on its own, to try secretsync with
//! kubectl by hand:
//!
//!     cargo run --example apiserver -- --kubeconfig /tmp/fake.kubeconfig
//!     KUBECONFIG=/tmp/fake.kubeconfig kubectl apply -f crds/
//!
//! It listens on 127.0.0.1 only and keeps everything in memory.

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where to write a kubeconfig that points at the server.
    #[arg(long)]
    kubeconfig: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server = apiserver::FakeApiServer::start().await;
    server.write_kubeconfig(&args.kubeconfig);
    println!("fake Kubernetes API server listening on {}", server.url);
    println!("kubeconfig written to {}", args.kubeconfig.display());
    println!("Ctrl-C stops it.");
    let _ = tokio::signal::ctrl_c().await;
}
