//! Who this process is, for the rows and queues a replica owns and for the operators'
//! page: its host, and a name unique to this start.

/// This machine's (or container's) host name.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A name unique to this process and start, `role-host-pid-nonce`, for the rows and
/// queues a replica owns. A restarted container has the same host name and pid, so the
/// nonce makes every start distinct.
pub fn replica_name(role: &str) -> String {
    let host = host_name();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{role}-{host}-{}-{nonce:08x}", std::process::id())
}
