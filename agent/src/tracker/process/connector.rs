//! The kernel's process-events connector (NETLINK_CONNECTOR, CN_IDX_PROC):
//! subscribing, receiving and parsing fork, exec, comm and exit events.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use crate::reactor::register_fd;

/// A process event of interest (thread events already filtered out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    Fork { parent: i32, child: i32 },
    Exec { pid: i32 },
    Comm { pid: i32, comm: Vec<u8> },
    Exit { pid: i32 },
}

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

pub(super) struct Connector {
    fd: AsyncFd<OwnedFd>,
}

const CONNECTOR_RCVBUF: usize = 1 << 20;

impl Connector {
    pub(super) fn open() -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = CN_IDX_PROC;
        // SAFETY: `sa` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Every process on the host reports here: room for a fork storm
        // (a lost event costs a /proc rescan).
        crate::net::nl::set_rcvbuf(&fd, CONNECTOR_RCVBUF);
        let msg = listen_message();
        // SAFETY: `msg` is a valid buffer of the length passed.
        let rc = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd: register_fd(fd, tokio::io::Interest::READABLE)?,
        })
    }
}

fn listen_message() -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_ne_bytes)
}

/// Parses one datagram from the connector into the events we use.
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg_type = buf
            .get(off + 4..off + 6)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_ne_bytes)
            .unwrap_or(0);
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        if msg_type == libc::NLMSG_ERROR as u16 || msg_type == libc::NLMSG_NOOP as u16 {
            continue;
        }
        let cn = NLMSG_HDRLEN;
        if u32_at(msg, cn) != Some(CN_IDX_PROC)
            || u32_at(msg, cn + 4) != Some(CN_VAL_PROC)
            || u32_at(msg, cn + 12) != Some(0)
        {
            continue;
        }
        let ev = cn + CN_MSG_LEN;
        let data = ev + 16; // what, cpu, timestamp_ns
        let Some(what) = u32_at(msg, ev) else {
            continue;
        };
        match what {
            PROC_EVENT_FORK => {
                // parent_pid, parent_tgid, child_pid, child_tgid
                if let (Some(ptgid), Some(cpid), Some(ctgid)) = (
                    i32_at(msg, data + 4),
                    i32_at(msg, data + 8),
                    i32_at(msg, data + 12),
                ) && cpid == ctgid
                {
                    out.push(ProcEvent::Fork {
                        parent: ptgid,
                        child: ctgid,
                    });
                }
            }
            PROC_EVENT_EXEC => {
                if let (Some(pid), Some(tgid)) = (i32_at(msg, data), i32_at(msg, data + 4))
                    && pid == tgid
                {
                    out.push(ProcEvent::Exec { pid: tgid });
                }
            }
            PROC_EVENT_COMM => {
                if let (Some(pid), Some(tgid), Some(raw)) = (
                    i32_at(msg, data),
                    i32_at(msg, data + 4),
                    msg.get(data + 8..data + 24),
                ) && pid == tgid
                {
                    let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                    out.push(ProcEvent::Comm {
                        pid: tgid,
                        comm: raw[..end].to_vec(),
                    });
                }
            }
            PROC_EVENT_EXIT => {
                if let (Some(pid), Some(tgid)) = (i32_at(msg, data), i32_at(msg, data + 4))
                    && pid == tgid
                {
                    out.push(ProcEvent::Exit { pid: tgid });
                }
            }
            _ => {}
        }
    }
    out
}

/// Waits for and drains the connector; never resolves without one.
pub(super) async fn recv_events(
    conn: Option<&Connector>,
    buf: &mut [u8],
) -> std::io::Result<Vec<ProcEvent>> {
    let Some(conn) = conn else {
        return std::future::pending().await;
    };
    let mut out = Vec::new();
    loop {
        let mut guard = conn.fd.readable().await?;
        loop {
            match recv_kernel(conn.fd.get_ref().as_raw_fd(), buf) {
                Ok(Some(n)) => out.extend(parse_datagram(&buf[..n])),
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
}

/// One datagram; `Ok(None)` for one not sent by the kernel.
fn recv_kernel(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: buffer and address are valid for the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_nl).cast(),
            &mut alen,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if addr.nl_pid != 0 {
        return Ok(None);
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, data: &[i32]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&what.to_ne_bytes());
        payload.extend_from_slice(&0u32.to_ne_bytes());
        payload.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            payload.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(payload.len() as u16).to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn parses_connector_events_and_skips_threads() {
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 11, 11])),
            [ProcEvent::Fork {
                parent: 10,
                child: 11
            }]
        );
        assert!(parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 12, 11])).is_empty());
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXEC, &[7, 7])),
            [ProcEvent::Exec { pid: 7 }]
        );
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXIT, &[7, 7, 0, 17])),
            [ProcEvent::Exit { pid: 7 }]
        );
        assert!(parse_datagram(&datagram(PROC_EVENT_EXIT, &[8, 7, 0, 17])).is_empty());
        let mut comm = datagram(PROC_EVENT_COMM, &[5, 5]);
        let mut name = *b"worker\0\0\0\0\0\0\0\0\0\0";
        name[6] = 0;
        comm.extend_from_slice(&name);
        let len = comm.len() as u32;
        comm[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            parse_datagram(&comm),
            [ProcEvent::Comm {
                pid: 5,
                comm: b"worker".to_vec()
            }]
        );
    }
}
