//! Real peers for integration tests, each started on 127.0.0.1 and stopped
//! when dropped.

#![allow(dead_code)] // each test binary uses its own share of this

pub mod apiserver;
pub mod bitnami;
pub mod cluster;
pub mod controller;
pub mod corpus;
pub mod fault_proxy;
pub mod moto;
pub mod peers;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

/// A port nothing listens on right now, and never handed out before in this
/// process: tests start servers in parallel, and a port released here is only
/// bound by the server a moment later.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port on 127.0.0.1");
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Keeps every line `stream` (a child's stdout or stderr) prints in `logs`,
/// from a thread of its own, so a test can read and scan them at any time.
pub fn keep_lines(stream: impl Read + Send + 'static, logs: &Arc<Mutex<Vec<String>>>) {
    let logs = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            logs.lock().unwrap().push(line);
        }
    });
}
