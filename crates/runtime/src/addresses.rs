//! Where a process listens, told to whoever started it: with `ADDRESS_FILE` set, the
//! process writes there one JSON object naming each address it bound (say `{"http":
//! "127.0.0.1:41234", "metrics": "127.0.0.1:41235"}`), once all are bound. Tests and
//! supervisors that start a replica on port 0 read its ports from it, not from a log line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable naming the file.
pub const ADDRESS_FILE_VAR: &str = "ADDRESS_FILE";

/// Writes `addresses` to the file `ADDRESS_FILE` names, if it is set. Written aside and
/// renamed into place, so a reader never sees half of it.
pub fn announce(addresses: &[(&str, SocketAddr)]) -> std::io::Result<()> {
    match std::env::var_os(ADDRESS_FILE_VAR) {
        Some(path) => announce_to(Path::new(&path), addresses),
        None => Ok(()),
    }
}

/// Writes `addresses` to `path`; an error names the file.
fn announce_to(path: &Path, addresses: &[(&str, SocketAddr)]) -> std::io::Result<()> {
    write(path, addresses).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write {ADDRESS_FILE_VAR} {}: {e}", path.display()),
        )
    })
}

fn write(path: &Path, addresses: &[(&str, SocketAddr)]) -> std::io::Result<()> {
    let object: serde_json::Map<String, serde_json::Value> = addresses
        .iter()
        .map(|(name, addr)| ((*name).to_owned(), addr.to_string().into()))
        .collect();
    let mut aside = PathBuf::from(path);
    aside.as_mut_os_string().push(".part");
    std::fs::write(&aside, serde_json::Value::Object(object).to_string())?;
    std::fs::rename(&aside, path)
}

/// The address named `name` in an address file, once the process has written it.
pub fn read(path: &Path, name: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path).ok()?;
    let object: serde_json::Value = serde_json::from_str(&text).ok()?;
    object.get(name)?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_written_is_read_back_by_name() {
        let path = std::env::temp_dir().join(format!("addresses-{}.json", std::process::id()));
        let http: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let metrics: SocketAddr = "[::1]:4001".parse().unwrap();
        write(&path, &[("http", http), ("metrics", metrics)]).unwrap();
        assert_eq!(read(&path, "http"), Some(http));
        assert_eq!(read(&path, "metrics"), Some(metrics));
        assert_eq!(read(&path, "grpc"), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read(&path, "http"), None);
    }

    #[test]
    fn a_file_that_cannot_be_written_is_named_in_the_error() {
        let path = std::env::temp_dir().join("no-such-directory-here/addresses.json");
        let http: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let error = announce_to(&path, &[("http", http)]).unwrap_err();
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
    }
}
