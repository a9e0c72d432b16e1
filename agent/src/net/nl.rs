//! A thin NETLINK_ROUTE socket on tokio: batched requests with one ack per
//! message, dumps, and multicast notifications.
//!
//! Requests are written many to a datagram. The kernel handles every message
//! of a datagram inside the one `sendmsg` call and queues one ack per message,
//! so N changes cost one system call plus N small reads instead of N round
//! trips through the event loop.

use std::{
    io,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use netlink_packet_core::{Emitable, NetlinkBuffer, NlasIterator};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_SETLINK: u16 = 19;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWRULE: u16 = 32;
pub(crate) const RTM_DELRULE: u16 = 33;
pub(crate) const RTM_GETRULE: u16 = 34;
pub(crate) const RTM_NEWQDISC: u16 = 36;
pub(crate) const RTM_GETQDISC: u16 = 38;

pub(crate) const NLM_F_REQUEST: u16 = 0x01;
pub(crate) const NLM_F_ACK: u16 = 0x04;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
/// On an error message: the original request was cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// On an error message: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

pub(crate) const RTNLGRP_LINK: u32 = 1;
pub(crate) const RTNLGRP_IPV4_IFADDR: u32 = 5;
pub(crate) const RTNLGRP_IPV6_IFADDR: u32 = 9;
// Route and rule changes, for the watcher that puts back what xvrrpd
// installed; unused until it is wired in.
#[allow(dead_code)]
pub(crate) const RTNLGRP_IPV4_ROUTE: u32 = 7;
#[allow(dead_code)]
pub(crate) const RTNLGRP_IPV4_RULE: u32 = 8;
#[allow(dead_code)]
pub(crate) const RTNLGRP_IPV6_ROUTE: u32 = 11;
#[allow(dead_code)]
pub(crate) const RTNLGRP_IPV6_RULE: u32 = 19;

/// Largest datagram the kernel sends us (dump parts are at most 32 KiB).
const RECV_BUF_LEN: usize = 64 * 1024;
/// Messages per datagram: keeps the acks of one datagram well inside the
/// receive buffer, so none is ever dropped.
const BATCH_MAX: usize = 128;
/// The kernel answers inside `sendmsg`; this only bounds a lost answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a dump the kernel marked inconsistent (changed while dumped).
const DUMP_RETRIES: usize = 3;

/// A netlink failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NlError {
    #[error(
        "cannot open a NETLINK_ROUTE socket: {0} (xvrrpd needs a Linux kernel with rtnetlink; check seccomp or container restrictions)"
    )]
    Open(String),
    #[error(
        "netlink socket error: {0} (transient errors clear on retry; otherwise restart xvrrpd)"
    )]
    Io(String),
    #[error("the kernel refused the request: {}{}", errno_text(*.errno), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel { errno: i32, message: Option<String> },
    #[error(
        "no netlink answer within {0:?}: the socket receive buffer overflowed or the kernel is stalled; retry the operation"
    )]
    Timeout(Duration),
    #[error("the kernel dropped netlink answers (receive buffer overrun); retry the operation")]
    Overrun,
    #[error(
        "the kernel kept changing the table while it was listed ({DUMP_RETRIES} tries); retry later"
    )]
    DumpInterrupted,
}

fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

impl NlError {
    fn io(e: io::Error) -> Self {
        NlError::Io(e.to_string())
    }

    /// The errno of a kernel refusal.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// One message read from the socket.
#[derive(Debug)]
pub(crate) enum Msg<'a> {
    /// An ack (`errno == 0`) or an error for request `seq`.
    Ack {
        seq: u32,
        errno: i32,
        message: Option<String>,
    },
    /// End of a dump.
    Done { seq: u32 },
    /// A data message: a dump part or a notification (`seq == 0`).
    Data {
        seq: u32,
        kind: u16,
        flags: u16,
        payload: &'a [u8],
    },
}

/// What one read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// A datagram of this many bytes is in the buffer.
    Datagram(usize),
    /// The kernel dropped messages for us (ENOBUFS) or one was too long.
    Overrun,
}

pub(crate) struct NlSocket {
    fd: AsyncFd<netlink_sys::Socket>,
    seq: u32,
    rx: Box<[u8]>,
}

impl NlSocket {
    /// A socket subscribed to `groups` (RTNLGRP_* numbers). Must be called
    /// inside a tokio runtime with IO enabled.
    pub(crate) fn open(groups: &[u32], rcvbuf: usize) -> Result<Self, NlError> {
        let open = |e: io::Error| NlError::Open(e.to_string());
        let mut sock =
            netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).map_err(open)?;
        sock.bind_auto().map_err(open)?;
        sock.set_non_blocking(true).map_err(open)?;
        // Both are optional niceties (kernel 4.3 / 4.12): short error acks
        // and the kernel's own error text.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        for g in groups {
            sock.add_membership(*g).map_err(open)?;
        }
        set_rcvbuf(&sock, rcvbuf);
        Ok(NlSocket {
            fd: super::async_fd(sock).map_err(open)?,
            seq: 0,
            rx: vec![0u8; RECV_BUF_LEN].into_boxed_slice(),
        })
    }

    /// Has the kernel check dump requests strictly and honour the filters
    /// in their headers (`NETLINK_GET_STRICT_CHK`, kernel 4.20), so a dump
    /// of a big table returns only what was asked for. False where the
    /// kernel cannot: its dumps then ignore the filters, and callers filter
    /// what comes back anyway.
    pub(crate) fn set_strict_check(&self) -> bool {
        self.fd.get_ref().set_netlink_get_strict_chk(true).is_ok()
    }

    fn next_seq(&mut self) -> u32 {
        // 0 is what notifications carry; never use it for a request.
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends one datagram (one or more messages). Netlink sends to the
    /// kernel never block for long; a full socket is reported as an error.
    fn send_raw(&self, buf: &[u8]) -> Result<(), NlError> {
        let n = self.fd.get_ref().send(buf, 0).map_err(NlError::io)?;
        if n != buf.len() {
            return Err(NlError::Io(format!(
                "short netlink send: {n} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Waits for and reads one datagram into the receive buffer.
    ///
    /// Cancel-safe: the only await is the readiness wait; once data is
    /// read, it is returned without another await.
    pub(crate) async fn recv(&mut self) -> Result<Recv, NlError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(NlError::io)?;
            let rx = &mut self.rx;
            match guard.try_io(|fd| recv_into(fd.get_ref(), rx)) {
                Ok(r) => return r.map_err(NlError::io),
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads one datagram, waiting until `deadline` if none is queued.
    ///
    /// The kernel answers our own requests and dumps inside the send and
    /// receive calls, so the answer is normally queued already and no timer
    /// is armed; the wait is for a kernel that behaves otherwise.
    async fn recv_by(&mut self, deadline: Instant) -> Result<Recv, NlError> {
        if let Some(r) = self.try_recv()? {
            return Ok(r);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.recv())
            .await
            .map_err(|_| NlError::Timeout(REPLY_TIMEOUT))?
    }

    /// Reads one datagram if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<Option<Recv>, NlError> {
        match recv_into(self.fd.get_ref(), &mut self.rx) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(NlError::io(e)),
        }
    }

    /// The messages of the datagram `recv` returned.
    pub(crate) fn messages(&self, len: usize) -> Messages<'_> {
        Messages {
            buf: &self.rx[..len.min(self.rx.len())],
        }
    }

    /// Sends `payloads` as `kind` requests with `flags | NLM_F_REQUEST |
    /// NLM_F_ACK`, many per datagram, and returns one result per payload in
    /// order.
    pub(crate) async fn request_acked<P: Emitable>(
        &mut self,
        kind: u16,
        flags: u16,
        payloads: &[P],
    ) -> Vec<Result<(), NlError>> {
        let mut results = Vec::with_capacity(payloads.len());
        let mut buf = Vec::new();
        for chunk in payloads.chunks(BATCH_MAX) {
            buf.clear();
            let first = self.seq.wrapping_add(1).max(1);
            let mut seqs = Vec::with_capacity(chunk.len());
            for p in chunk {
                let seq = self.next_seq();
                seqs.push(seq);
                push_message(&mut buf, kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, p);
            }
            let mut slot: Vec<Option<Result<(), NlError>>> = vec![None; chunk.len()];
            match self.send_raw(&buf) {
                Ok(()) => {
                    if let Err(e) = self.collect_acks(&seqs, first, &mut slot).await {
                        for s in slot.iter_mut().filter(|s| s.is_none()) {
                            *s = Some(Err(e.clone()));
                        }
                    }
                }
                Err(e) => slot.iter_mut().for_each(|s| *s = Some(Err(e.clone()))),
            }
            results.extend(slot.into_iter().map(|s| s.unwrap_or(Err(NlError::Overrun))));
        }
        results
    }

    async fn collect_acks(
        &mut self,
        seqs: &[u32],
        first: u32,
        slot: &mut [Option<Result<(), NlError>>],
    ) -> Result<(), NlError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut missing = seqs.len();
        while missing > 0 {
            let len = match self.recv_by(deadline).await? {
                Recv::Datagram(len) => len,
                Recv::Overrun => return Err(NlError::Overrun),
            };
            for m in self.messages(len) {
                if let Msg::Ack {
                    seq,
                    errno,
                    message,
                } = m
                {
                    // Answers to requests a cancelled call left behind
                    // carry other numbers: skip them.
                    let idx = seq.wrapping_sub(first) as usize;
                    let idx = if seqs.get(idx) == Some(&seq) {
                        Some(idx)
                    } else {
                        // The counter wrapped inside this batch.
                        seqs.iter().position(|s| *s == seq)
                    };
                    if let Some(idx) = idx
                        && slot[idx].is_none()
                    {
                        slot[idx] = Some(if errno == 0 {
                            Ok(())
                        } else {
                            Err(NlError::Kernel { errno, message })
                        });
                        missing -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends a dump request and returns its sequence number; the answers
    /// arrive through `recv`.
    pub(crate) fn start_dump(&mut self, kind: u16, header: &[u8]) -> Result<u32, NlError> {
        let seq = self.next_seq();
        let mut buf = Vec::with_capacity(NLMSG_HDRLEN + header.len());
        push_message(
            &mut buf,
            kind,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            &RawPayload(header),
        );
        self.send_raw(&buf)?;
        Ok(seq)
    }

    /// Sends one `kind` request that the kernel answers with one message
    /// (`RTM_GETROUTE` for a destination) and returns that message's payload.
    pub(crate) async fn get(&mut self, kind: u16, payload: &[u8]) -> Result<Vec<u8>, NlError> {
        let seq = self.next_seq();
        let mut buf = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
        push_message(&mut buf, kind, NLM_F_REQUEST, seq, &RawPayload(payload));
        self.send_raw(&buf)?;
        self.answers(seq, |m| match m {
            Msg::Data {
                seq: s, payload, ..
            } if s == seq => Some(payload.to_vec()),
            _ => None,
        })
        .await
    }

    /// Reads the answers to request `seq` until `each` returns a value or
    /// the kernel refuses the request.
    async fn answers<T>(
        &mut self,
        seq: u32,
        mut each: impl FnMut(Msg<'_>) -> Option<T>,
    ) -> Result<T, NlError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let len = match self.recv_by(deadline).await? {
                Recv::Datagram(len) => len,
                Recv::Overrun => return Err(NlError::Overrun),
            };
            for m in self.messages(len) {
                if let Msg::Ack {
                    seq: s,
                    errno,
                    message,
                } = &m
                    && *s == seq
                    && *errno != 0
                {
                    return Err(NlError::Kernel {
                        errno: *errno,
                        message: message.clone(),
                    });
                }
                if let Some(t) = each(m) {
                    return Ok(t);
                }
            }
        }
    }

    /// Dumps a table: calls `each(kind, payload)` for every entry. Retries
    /// when the kernel reports that the table changed during the dump.
    pub(crate) async fn dump(
        &mut self,
        kind: u16,
        header: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<(), NlError> {
        for _ in 0..DUMP_RETRIES {
            let mut entries: Vec<(u16, Vec<u8>)> = Vec::new();
            let seq = self.start_dump(kind, header)?;
            let mut interrupted = false;
            self.answers(seq, |m| match m {
                Msg::Data {
                    seq: s,
                    kind,
                    flags,
                    payload,
                } if s == seq => {
                    interrupted |= flags & NLM_F_DUMP_INTR != 0;
                    entries.push((kind, payload.to_vec()));
                    None
                }
                Msg::Done { seq: s } if s == seq => Some(()),
                _ => None,
            })
            .await?;
            if !interrupted {
                for (k, p) in &entries {
                    each(*k, p);
                }
                return Ok(());
            }
        }
        Err(NlError::DumpInterrupted)
    }
}

/// The raw socket, for options this module does not wrap (a classic BPF
/// filter on notifications).
impl AsFd for NlSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

fn recv_into(sock: &netlink_sys::Socket, rx: &mut [u8]) -> io::Result<Recv> {
    let cap = rx.len();
    let mut out = &mut rx[..];
    match sock.recv(&mut out, libc::MSG_TRUNC) {
        // With MSG_TRUNC the kernel reports the real datagram length.
        Ok(n) if n > cap => Ok(Recv::Overrun),
        Ok(n) => Ok(Recv::Datagram(n)),
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Recv::Overrun),
        Err(e) => Err(e),
    }
}

pub(crate) fn set_rcvbuf(sock: &impl AsFd, size: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    // FORCE passes rmem_max when we have CAP_NET_ADMIN; otherwise the
    // plain option gets as close as the limit allows.
    if setsockopt(&sock.as_fd(), sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(&sock.as_fd(), sockopt::RcvBuf, &size);
    }
}

/// A payload that is already bytes (dump request headers, hand-built
/// attributes).
pub(crate) struct RawPayload<'a>(pub(crate) &'a [u8]);

impl Emitable for RawPayload<'_> {
    fn buffer_len(&self) -> usize {
        self.0.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.0.len()].copy_from_slice(self.0);
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one netlink message (header + payload, padded to 4 bytes).
fn push_message<P: Emitable + ?Sized>(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &P,
) {
    let start = buf.len();
    let len = NLMSG_HDRLEN + payload.buffer_len();
    buf.resize(start + align4(len), 0);
    let h = &mut buf[start..start + NLMSG_HDRLEN];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&flags.to_ne_bytes());
    h[8..12].copy_from_slice(&seq.to_ne_bytes());
    h[12..16].copy_from_slice(&0u32.to_ne_bytes());
    payload.emit(&mut buf[start + NLMSG_HDRLEN..start + len]);
}

/// Iterates over the messages of one datagram; stops at the first
/// malformed one.
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Msg<'a>;

    fn next(&mut self) -> Option<Msg<'a>> {
        loop {
            let nl = NetlinkBuffer::new_checked(self.buf).ok()?;
            let len = nl.length() as usize;
            let kind = nl.message_type();
            let flags = nl.flags();
            let seq = nl.sequence_number();
            let payload = self.buf.get(NLMSG_HDRLEN..len)?;
            self.buf = self.buf.get(align4(len)..).unwrap_or(&[]);
            match kind {
                NLMSG_ERROR => {
                    let code = payload.get(0..4)?;
                    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                    let message = ext_ack_message(flags, &payload[4..]);
                    return Some(Msg::Ack {
                        seq,
                        errno: code.saturating_neg(),
                        message,
                    });
                }
                NLMSG_DONE => return Some(Msg::Done { seq }),
                NLMSG_OVERRUN | 1 => continue, // overrun marker / NOOP
                _ => {
                    return Some(Msg::Data {
                        seq,
                        kind,
                        flags,
                        payload,
                    });
                }
            }
        }
    }
}

/// The kernel's error text from an extended ack, when there is one.
fn ext_ack_message(flags: u16, rest: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // `rest` is the echoed request: just its header when capped.
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let l = rest.get(0..4)?;
        align4(u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
    };
    let tlvs = rest.get(echoed..)?;
    for nla in NlasIterator::new(tlvs) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let v = nla.value();
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            return Some(String::from_utf8_lossy(&v[..end]).into_owned());
        }
    }
    None
}

/// Reads a NUL-terminated string attribute value.
pub(crate) fn nla_string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLM_F_MULTI: u16 = 0x02;

    fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_message(&mut b, kind, flags, seq, &RawPayload(payload));
        b
    }

    #[test]
    fn messages_are_padded_and_parsed_back() {
        let mut dgram = nlmsg(RTM_NEWADDR, NLM_F_MULTI, 7, &[1, 2, 3, 4, 5]);
        assert_eq!(dgram.len(), 24, "21 bytes pad to 24");
        dgram.extend(nlmsg(NLMSG_DONE, NLM_F_MULTI, 7, &[0, 0, 0, 0]));
        let got: Vec<_> = Messages { buf: &dgram }.collect();
        assert_eq!(got.len(), 2);
        match &got[0] {
            Msg::Data {
                seq, kind, payload, ..
            } => {
                assert_eq!((*seq, *kind), (7, RTM_NEWADDR));
                assert_eq!(*payload, &[1, 2, 3, 4, 5]);
            }
            other => panic!("expected data, got {other:?}"),
        }
        assert!(matches!(got[1], Msg::Done { seq: 7 }));
    }

    #[test]
    fn error_acks_carry_errno_and_kernel_text() {
        // errno -17 (EEXIST), capped echoed header, then an NLMSGERR_ATTR_MSG.
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend(nlmsg(RTM_NEWADDR, NLM_F_REQUEST, 9, &[]));
        let text = b"Address already assigned\0";
        let nla_len = 4 + text.len();
        p.extend((nla_len as u16).to_ne_bytes());
        p.extend(NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend(text);
        while !p.len().is_multiple_of(4) {
            p.push(0);
        }
        let dgram = nlmsg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 9, &p);
        let got: Vec<_> = Messages { buf: &dgram }.collect();
        match &got[..] {
            [
                Msg::Ack {
                    seq: 9,
                    errno: 17,
                    message: Some(m),
                },
            ] => assert_eq!(m, "Address already assigned"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_datagram_stops_iteration() {
        let dgram = nlmsg(RTM_NEWLINK, 0, 0, &[0; 16]);
        assert_eq!(Messages { buf: &dgram[..20] }.count(), 0);
    }
}
