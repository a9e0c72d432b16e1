//! Deletions of routes and policy rules, for putting back the ones xvrrpd
//! installed (`virtual_routes`, `virtual_rules`, `static_*`) when someone
//! else removes them.
//!
//! A load balancer's host may carry a full BGP table that churns all day,
//! so the socket has a classic BPF filter: the kernel hands it only route
//! deletions with one of the protocols xvrrpd installs with, and rule
//! deletions (rare). Everything else never wakes the daemon.

use std::os::fd::{AsFd, AsRawFd};

use super::{
    NlError,
    nl::{
        self, NLMSG_HDRLEN, NlSocket, RTM_DELROUTE, RTM_DELRULE, RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE, Recv,
    },
    route::{RouteSpec, RuleSpec, parse_route, parse_rule},
};

/// A deletion the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOrRule {
    Route(RouteSpec),
    Rule(RuleSpec),
}

/// Only deletions come in; the buffer needs room for a burst of them.
const RCVBUF: usize = 256 * 1024;

pub struct RouteWatcher {
    sock: NlSocket,
    pending: std::collections::VecDeque<RouteOrRule>,
}

impl RouteWatcher {
    /// Watches deletions of routes with a protocol of `protocols` and of
    /// rules. Must be called inside a tokio runtime.
    pub fn new(protocols: &[u8]) -> Result<Self, NlError> {
        let sock = NlSocket::open(
            &[
                RTNLGRP_IPV4_ROUTE,
                RTNLGRP_IPV6_ROUTE,
                RTNLGRP_IPV4_RULE,
                RTNLGRP_IPV6_RULE,
            ],
            RCVBUF,
        )?;
        attach_filter(&sock, protocols)?;
        Ok(Self {
            sock,
            pending: Default::default(),
        })
    }

    /// The next deletion. Cancel-safe. An overrun (deletions lost) comes
    /// back as an error: the caller re-checks what it installed.
    pub async fn next(&mut self) -> Result<RouteOrRule, NlError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let len = match self.sock.recv().await? {
                Recv::Datagram(len) => len,
                Recv::Overrun => return Err(NlError::Overrun),
            };
            for m in self.sock.messages(len) {
                if let nl::Msg::Data { kind, payload, .. } = m {
                    let ev = match kind {
                        RTM_DELROUTE => parse_route(payload).map(RouteOrRule::Route),
                        RTM_DELRULE => parse_rule(payload).map(RouteOrRule::Rule),
                        _ => None,
                    };
                    self.pending.extend(ev);
                }
            }
        }
    }
}

/// The filter: pass RTM_DELRULE, and RTM_DELROUTE whose `rtm_protocol` is
/// one of `protocols`; drop the rest. Netlink fields are in host order, and
/// a classic BPF half-word load is big-endian, so the type is compared
/// byte-swapped on little-endian hosts.
fn attach_filter(sock: &NlSocket, protocols: &[u8]) -> Result<(), NlError> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let host16 = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    // nlmsghdr: len u32, type u16 (offset 4); rtmsg after the header:
    // family, dst_len, src_len, tos, table, protocol (offset 5).
    let type_off = 4u32;
    let proto_off = (NLMSG_HDRLEN + 5) as u32;
    let mut prog: Vec<libc::sock_filter> = Vec::new();
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    prog.push(ins(LD_H_ABS, 0, 0, type_off));
    prog.push(ins(JEQ_K, 0, 1, host16(RTM_DELRULE)));
    prog.push(ins(RET_K, 0, 0, u32::MAX));
    // Not a rule: a route deletion, or dropped.
    let n = protocols.len().min(32) as u8;
    prog.push(ins(JEQ_K, 1, 0, host16(RTM_DELROUTE)));
    prog.push(ins(RET_K, 0, 0, 0));
    prog.push(ins(LD_B_ABS, 0, 0, proto_off));
    for (i, p) in protocols.iter().take(n as usize).enumerate() {
        // On a match, jump to the accept after the last comparison.
        let to_accept = n - 1 - i as u8 + 1;
        prog.push(ins(JEQ_K, to_accept, 0, u32::from(*p)));
    }
    prog.push(ins(RET_K, 0, 0, 0));
    prog.push(ins(RET_K, 0, 0, u32::MAX));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: a valid sock_fprog pointing at `prog`, which outlives the call
    // (the kernel copies the program).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NlError::Open(format!(
            "filtering route notifications: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
