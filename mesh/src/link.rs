//! Facts about network interfaces, read with the classic socket ioctls
//! (which act in the calling thread's network namespace, unlike sysfs,
//! which shows the namespace it was mounted in), and the one setting the
//! routing mesh needs on a task's interface.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(name: &str, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    let sock = socket()?;
    // SAFETY: `req` is a valid ifreq for these requests, and outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, req as *mut libc::ifreq) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{name}: {e}")));
    }
    Ok(())
}

/// The interface's index.
pub fn index(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: c is a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        )),
        i => Ok(i),
    }
}

/// The interface's MTU.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(name, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled in the mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// The interface's hardware address.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    ioctl(name, libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled in the hwaddr member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(std::array::from_fn(|i| data[i] as u8))
}

/// Turn on GRO for `name`. A veth with GRO on receives in NAPI, and only a
/// veth that does can take frames redirected by XDP: the routing mesh hands
/// packets for a local backend straight to the node end of its task's
/// veth, which delivers them to this end.
pub fn enable_gro(name: &str) -> io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_SGRO: u32 = 0x2c;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    ioctl(name, libc::SIOCETHTOOL, &mut req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_read_and_bad_names_are_refused() {
        assert!(index("lo").unwrap() > 0);
        assert!(mtu("lo").unwrap() >= 1500);
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(index("no-such-if0").is_err());
        assert!(mtu("a-name-that-is-far-too-long").is_err());
    }
}
