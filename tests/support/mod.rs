//! Real peers for integration tests, each started on 127.0.0.1 and stopped
//! when dropped.

#![allow(dead_code)] // each test binary uses its own share of this

pub mod fault_proxy;
pub mod moto;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}
