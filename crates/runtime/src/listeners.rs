//! Listening sockets with an accept queue as deep as the kernel allows. The standard
//! library listens with a queue of 128: when a replica dies and its thousands of clients
//! reconnect to another at once, the connections past 128 that the server has not yet
//! accepted are dropped by the kernel, and each of those clients waits for its SYN to be
//! sent again (1 s, then 3 s, then 7 s): a reconnect storm then takes seconds longer than
//! the server needs. The kernel caps the queue at `net.core.somaxconn` (4096 on current
//! Linux), which is the operator's setting for it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Socket, Type};

/// Asked of `listen(2)`, which lowers it to `net.core.somaxconn`.
const ACCEPT_QUEUE: i32 = 65_535;

/// Binds `addr` (a `host:port`; port 0 picks a free one) and listens on it with the
/// deepest accept queue the kernel allows. Like `TcpListener::bind`, an address in use by
/// a live listener is refused (`SO_REUSEADDR` only lets a restart rebind past `TIME_WAIT`).
pub fn listen(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        match listen_on(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_QUEUE)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    /// 1,000 clients connect to a listener nobody accepts on (a server busy with a storm):
    /// each handshake completes within 200 ms. With the standard library's queue of 128,
    /// the 130th SYN is dropped and its client waits a second for the retry.
    #[test]
    fn a_thousand_unaccepted_connections_complete_their_handshake() {
        let listener = listen("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..1000)
            .map(|n| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .unwrap_or_else(|e| panic!("connection {n} was not queued: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), 1000);
    }

    #[test]
    fn an_address_in_use_is_refused() {
        let listener = listen("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let error = listen(addr).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }
}
