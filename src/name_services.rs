//! Where host names are looked up: `/etc/hosts`, then DNS, whatever
//! `/etc/nsswitch.conf` says.
//!
//! Names the bridge resolves through the C library (`getaddrinfo`: the
//! collector's and AWS endpoints' hosts, and `AWS_LAMBDA_RUNTIME_API` when
//! it is not an address) go through glibc's name service switch. A binary
//! linked with glibc statically (`BRIDGE_LINK=static scripts/build-layer.sh`,
//! docs/PERFORMANCE.md, "glibc linked in") has only the `files` and `dns`
//! sources built in: for any other source `/etc/nsswitch.conf` lists for
//! `hosts` (`myhostname`, `resolve`, `mdns4_minimal`, ...) it would load the
//! host's `libnss_*.so.2` into the process, a library built against another
//! copy of glibc; the shipped binary, linked dynamically, would load those
//! modules too, and a name could resolve through a source Lambda sandboxes
//! do not have. [`pin_hosts_lookup`] sets the `hosts` sources to `files dns`
//! before the first lookup instead, in every build, so that the static and
//! the dynamic binary resolve alike: the hosts file, then the name servers
//! of `/etc/resolv.conf` (what a Lambda sandbox resolves with).

use std::ffi::CStr;
use std::sync::OnceLock;

/// The sources host names are looked up in, in order.
const HOSTS_SOURCES: &CStr = c"files dns";

/// Sets glibc's `hosts` lookup to `files dns`, once per process; later
/// calls do nothing. Call it while the process has one thread (glibc
/// changes the setting without a lock against lookups running at the same
/// time): the binary calls it before its async runtime starts, and before
/// resolving a Runtime API host name if it must. Returns whether the
/// setting is in place (always `false` where the C library is not glibc).
pub fn pin_hosts_lookup() -> bool {
    static PINNED: OnceLock<bool> = OnceLock::new();
    *PINNED.get_or_init(configure)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn configure() -> bool {
    unsafe extern "C" {
        /// glibc (`<nss.h>`, every version since 2.0): replaces the sources
        /// of database `db` with `sources`, as if `/etc/nsswitch.conf` said
        /// so, and stops re-reading that file for it; 0 on success.
        fn __nss_configure_lookup(
            db: *const libc::c_char,
            sources: *const libc::c_char,
        ) -> libc::c_int;
    }
    // SAFETY: two NUL-terminated static strings.
    unsafe { __nss_configure_lookup(c"hosts".as_ptr(), HOSTS_SOURCES.as_ptr()) == 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn configure() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn pinned_lookups_still_resolve_names_of_the_hosts_file() {
        assert!(pin_hosts_lookup(), "glibc refused the hosts sources");
        assert!(pin_hosts_lookup(), "a second call reports the same");
        use std::net::ToSocketAddrs;
        let addrs: Vec<_> = ("localhost", 80).to_socket_addrs().unwrap().collect();
        assert!(
            addrs.iter().any(|a| a.ip().is_loopback()),
            "localhost (from /etc/hosts) resolved to {addrs:?}"
        );
    }
}
