//! The datapath: VRRP adverts in and out.
//!
//! In: the eBPF programs (XDP, TC fallback) validate adverts in the kernel
//! and push [`AdvertEvent`]s to a ring buffer; without eBPF a raw socket and
//! the same rules in Rust ([`validate`]) produce the same records. [`event`]
//! turns them into typed [`Received`] adverts, so the rest of the agent
//! cannot tell which one runs: it sees a [`Datapath`].
//!
//! Conflict guard (eBPF only): the kernel also watches ARP and neighbour
//! advertisements for the VIPs the agent guards ([`Datapath::guard`]) and
//! reports claims of them by other MACs as [`Claim`]s. The raw-socket
//! receiver does not watch for claims: [`Datapath::guards_claims`] says
//! which one runs.
//!
//! Out: [`send`] owns the raw sockets adverts leave through, and
//! [`send::Outlet`] one instance's cached encoded advert.

pub mod ebpf;
pub mod event;
pub mod fence;
pub mod pin;
pub mod rawsock;
pub mod send;
#[cfg(any(test, feature = "testkit"))]
pub mod spec;
pub mod validate;

use std::{io, net::IpAddr, os::fd::RawFd};

use tokio::io::unix::AsyncFd;
pub use xvrrpd_common::{AdvertEvent, Counter};
use xvrrpd_common::{
    COUNTER_COUNT, ClaimEvent, DownEvent, FAMILY_IPV4, FAMILY_IPV6, GuardKey, GuardValue, Heard,
    IfacePolicy, QuietAdvert, VridConfig, VridKey,
};

pub use self::event::{Claim, Received};
use self::{
    ebpf::{AttachMode, AttachPreference, DatapathError, EbpfDatapath, EventRing},
    rawsock::RawReceiver,
};

/// How adverts are received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatapathKind {
    Ebpf,
    RawSocket,
}

/// What to configure: one entry per VRRP instance.
#[derive(Clone, Debug)]
pub struct VridSpec {
    pub ifname: String,
    pub key: VridKey,
    pub cfg: VridConfig,
    /// Multicast group to join on the interface (for NIC filters and, on the
    /// raw-socket path, for delivery).
    pub group: IpAddr,
    /// `use_vmac`: the macvlan in front of which the datapath sits. The
    /// eBPF program sees adverts on the base before the macvlan takes
    /// them; the raw sockets only see them on the macvlan.
    pub vmac_ifindex: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
pub struct DatapathOptions {
    /// Use the raw-socket receiver even when eBPF is available.
    pub no_ebpf: bool,
    pub attach: AttachPreference,
    /// Run the master-down timer in the kernel where it has BPF timers
    /// (off: the agent runs every down timer, as on older kernels).
    pub kernel_timers: bool,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        Self {
            no_ebpf: false,
            attach: AttachPreference::Auto,
            kernel_timers: true,
        }
    }
}

enum Inner {
    Ebpf {
        dp: Box<EbpfDatapath>,
        ring: Box<AsyncFd<EventRing>>,
        /// Keeps multicast memberships for NIC filters.
        _joins: RawReceiver,
    },
    Raw {
        // Declared before `rx` so they are deregistered before its sockets close.
        v4: AsyncFd<RawFd>,
        v6: AsyncFd<RawFd>,
        rx: RawReceiver,
    },
}

/// eBPF programs loaded and attached off the event loop, with the sockets
/// holding the multicast memberships, ready for [`Datapath::upgrade`].
pub struct PreparedEbpf {
    dp: EbpfDatapath,
    joins: RawReceiver,
}

/// The raw sockets an upgraded datapath no longer reads.
pub struct RetiredSockets(RawReceiver);

impl RetiredSockets {
    /// Closes them on a thread of their own: closing a socket that holds
    /// multicast memberships takes the RTNL lock, which another daemon's XDP
    /// attach can hold for tens of milliseconds, and a master's adverts
    /// would wait meanwhile. The thread inherits the caller's capabilities,
    /// so call this after dropping them.
    pub fn close_in_background(self) {
        let rx = self.0;
        if let Err(e) = std::thread::Builder::new()
            .name("raw-close".into())
            .spawn(move || drop(rx))
        {
            tracing::debug!("closing the raw sockets on the event loop: {e}");
        }
    }
}

/// The receive side, whichever implementation runs.
pub struct Datapath {
    inner: Inner,
    attach: AttachPreference,
    /// Why eBPF is not in use, when it is not.
    pub fallback_reason: Option<String>,
    /// Records read but not yet decoded (reused: no allocation per wake-up).
    scratch: Vec<AdvertEvent>,
    claim_scratch: Vec<ClaimEvent>,
    /// Claims decoded by `recv`/`drain`, for [`Datapath::take_claims`].
    claims: Vec<Claim>,
    /// The kernel's expired down timers, for [`Datapath::take_downs`].
    downs: Vec<DownEvent>,
}

impl Datapath {
    /// eBPF if it loads and attaches everywhere, else the raw-socket receiver.
    /// Must run inside a tokio runtime.
    pub fn open(specs: &[VridSpec], opts: DatapathOptions) -> io::Result<Self> {
        let reason = if opts.no_ebpf {
            "disabled with --no-ebpf".to_string()
        } else {
            match Self::prepare_ebpf(specs, opts, None).and_then(|p| Self::take_over(p, specs)) {
                Ok(inner) => return Ok(Self::with(inner, opts, None)),
                Err(e) => e.to_string(),
            }
        };
        Self::open_raw(specs, opts, reason)
    }

    /// The eBPF datapath a previous run of this binary left pinned in
    /// `pins`, adopted as it runs: no verification, no raw-socket phase.
    /// `None` when there is nothing to adopt.
    pub fn adopt(
        pins: &pin::PinDir,
        opts: DatapathOptions,
        ifnames: &[String],
    ) -> Result<Option<Self>, DatapathError> {
        let Some(dp) = EbpfDatapath::adopt(pins, ifnames, opts.attach)? else {
            return Ok(None);
        };
        let joins = RawReceiver::open()?;
        let inner = Self::take_over(PreparedEbpf { dp, joins }, &[])?;
        Ok(Some(Self::with(inner, opts, None)))
    }

    fn with(inner: Inner, opts: DatapathOptions, fallback_reason: Option<String>) -> Self {
        Self {
            inner,
            attach: opts.attach,
            fallback_reason,
            scratch: Vec::new(),
            claim_scratch: Vec::new(),
            claims: Vec::new(),
            downs: Vec::new(),
        }
    }

    /// The raw-socket receiver, with the reason eBPF is not (yet) in use.
    pub fn open_raw(specs: &[VridSpec], opts: DatapathOptions, reason: String) -> io::Result<Self> {
        let mut rx = RawReceiver::open()?;
        for s in specs {
            rx.set_vrid(s.key, s.cfg, s.group, s.vmac_ifindex)?;
        }
        let [f4, f6] = rx.fds();
        // SAFETY: both fds belong to `rx`, which lives in the same variant and
        // is dropped after the registrations (field order).
        let (v4, v6) = unsafe { (AsyncFd::register(f4)?, AsyncFd::register(f6)?) };
        Ok(Self::with(Inner::Raw { v4, v6, rx }, opts, Some(reason)))
    }

    /// Loads and attaches the eBPF programs without taking over yet:
    /// delivered adverts still go on to the stack, so the raw sockets keep
    /// receiving until [`Datapath::upgrade`] switches. Runs on a thread of
    /// its own (verification and XDP attach take ~100 ms), in the daemon's
    /// network namespace.
    pub fn prepare_ebpf(
        specs: &[VridSpec],
        opts: DatapathOptions,
        pins: Option<pin::PinDir>,
    ) -> Result<PreparedEbpf, DatapathError> {
        let pref = opts.attach;
        let mut dp = EbpfDatapath::load(opts.kernel_timers)?;
        if let Some(pins) = pins {
            dp.pin_links(pins)?;
        }
        let mut done: Vec<&str> = Vec::new();
        for s in specs {
            if !done.contains(&s.ifname.as_str()) {
                let mut policy = IfacePolicy::DEFAULT;
                policy.drop_delivered = 0;
                dp.set_policy(s.key.ifindex, policy)?;
                let mode = dp.attach(&s.ifname, pref)?;
                tracing::info!(interface = %s.ifname, mode = %mode, "datapath attached");
                done.push(&s.ifname);
            }
            dp.set_vrid(s.key, s.cfg)?;
        }
        // Multicast memberships for NIC filters, held by sockets never read;
        // joining takes the RTNL lock, so it happens here, off the loop.
        let mut joins = RawReceiver::open()?;
        for s in specs {
            joins.set_vrid(s.key, s.cfg, s.group, None)?;
        }
        Ok(PreparedEbpf { dp, joins })
    }

    /// Switches a raw-socket datapath to programs from
    /// [`Datapath::prepare_ebpf`]: adverts still queued on the raw sockets go
    /// to `out` (the ring holds the same ones again, which is harmless: they
    /// come in order), then the programs start consuming what they deliver.
    /// On error the raw sockets stay. The raw sockets come back as
    /// [`RetiredSockets`], for the caller to close once it has dropped the
    /// capabilities a new thread would otherwise inherit.
    pub fn upgrade(
        &mut self,
        prepared: PreparedEbpf,
        specs: &[VridSpec],
        out: &mut Vec<Received>,
    ) -> Result<Option<RetiredSockets>, DatapathError> {
        let PreparedEbpf { mut dp, mut joins } = prepared;
        if let Inner::Raw { rx, .. } = &mut self.inner {
            rx.drain(&mut self.scratch)?;
            out.extend(self.scratch.drain(..).map(|e| event::decode(&e)));
        }
        // The configuration may have been reloaded while the programs loaded.
        for s in specs {
            if !dp.attachments().iter().any(|(i, _)| *i == s.ifname) {
                let mode = dp.attach(&s.ifname, self.attach)?;
                tracing::info!(interface = %s.ifname, mode = %mode, "datapath attached");
                joins.set_vrid(s.key, s.cfg, s.group, None)?;
            }
        }
        let ebpf = Self::take_over(PreparedEbpf { dp, joins }, specs)?;
        let retired = match std::mem::replace(&mut self.inner, ebpf) {
            Inner::Raw { v4, v6, rx } => {
                // Off the reactor here; the fds stay open in `rx`.
                drop((v4, v6));
                Some(RetiredSockets(rx))
            }
            Inner::Ebpf { .. } => None,
        };
        self.fallback_reason = None;
        Ok(retired)
    }

    /// The attached programs take over: they consume the adverts they
    /// deliver, and their ring is read on the event loop.
    fn take_over(prepared: PreparedEbpf, specs: &[VridSpec]) -> Result<Inner, DatapathError> {
        let PreparedEbpf { mut dp, joins } = prepared;
        for s in specs {
            dp.set_vrid(s.key, s.cfg)?;
            dp.set_policy(s.key.ifindex, IfacePolicy::DEFAULT)?;
        }
        // SAFETY: the ring owns its fd and moves into the AsyncFd with it.
        let ring = unsafe { AsyncFd::register(dp.take_events()?) }
            .map_err(|e| DatapathError::Io(e.into()))?;
        Ok(Inner::Ebpf {
            dp: Box::new(dp),
            ring: Box::new(ring),
            _joins: joins,
        })
    }

    pub fn kind(&self) -> DatapathKind {
        match self.inner {
            Inner::Ebpf { .. } => DatapathKind::Ebpf,
            Inner::Raw { .. } => DatapathKind::RawSocket,
        }
    }

    /// Interfaces and attach modes (eBPF only).
    pub fn attachments(&self) -> Vec<(String, AttachMode)> {
        match &self.inner {
            Inner::Ebpf { dp, .. } => dp.attachments().to_vec(),
            Inner::Raw { .. } => Vec::new(),
        }
    }

    /// Waits until adverts or claims are pending, then appends the adverts,
    /// decoded, to `out`; the claims wait for [`Datapath::take_claims`].
    pub async fn recv(&mut self, out: &mut Vec<Received>) -> io::Result<usize> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.recv_events(&mut scratch).await;
        out.extend(scratch.drain(..).map(|e| event::decode(&e)));
        self.scratch = scratch;
        self.collect_claims();
        r
    }

    fn collect_claims(&mut self) {
        if let Inner::Ebpf { ring, .. } = &mut self.inner {
            ring.get_mut().take_downs(&mut self.downs);
            ring.get_mut().take_claims(&mut self.claim_scratch);
            self.claims.extend(
                self.claim_scratch
                    .drain(..)
                    .map(|e| event::decode_claim(&e)),
            );
        }
    }

    /// Moves the claims received so far to `out`.
    pub fn take_claims(&mut self, out: &mut Vec<Claim>) {
        out.append(&mut self.claims);
    }

    /// Moves the kernel's expired down timers received so far to `out`.
    pub fn take_downs(&mut self, out: &mut Vec<DownEvent>) {
        out.append(&mut self.downs);
    }

    /// Whether the kernel runs the master-down timer of the VRIDs whose
    /// adverts it keeps (eBPF with BPF timers).
    pub fn kernel_timers(&self) -> bool {
        match &self.inner {
            Inner::Ebpf { dp, .. } => dp.kernel_timers(),
            Inner::Raw { .. } => false,
        }
    }

    /// Whether claims of guarded VIPs are reported (the eBPF datapath).
    pub fn guards_claims(&self) -> bool {
        matches!(self.inner, Inner::Ebpf { .. })
    }

    /// Guards `addr` on `ifindex` for the instance `owner` (its VRID key):
    /// claims by any MAC but `mac` are reported, at most once per
    /// `min_interval_ns`, and the VIP is fenced when the instance's lease
    /// lapses (see [`Datapath::renew_leases`]); `flags` are
    /// `GUARD_FLAG_*` (a VMAC's shared MAC, non-accept mode). No-op on the
    /// raw path.
    pub fn guard(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        owner: VridKey,
        (mac, flags): ([u8; 6], u8),
        min_interval_ns: u64,
    ) -> io::Result<()> {
        if let Inner::Ebpf { dp, .. } = &mut self.inner {
            let value = GuardValue {
                mac,
                vrid: owner.vrid,
                family: owner.family,
                min_interval_ns,
                last_report_ns: 0,
                last_claim_ns: 0,
                last_claim_mac: [0; 6],
                flags,
                _pad2: 0,
            };
            dp.set_guard(guard_key(ifindex, addr), value)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Whether any guarded VIP is in non-accept mode. `Ok(false)` on the raw
    /// path, which cannot drop packets for it.
    pub fn set_no_accept(&mut self, on: bool) -> Result<bool, DatapathError> {
        match &mut self.inner {
            Inner::Ebpf { dp, .. } => dp.set_no_accept(on).map(|()| true),
            Inner::Raw { .. } => Ok(false),
        }
    }

    /// The agent vouches for being MASTER of `key` until `until_ns`
    /// (CLOCK_MONOTONIC); renewed with every advert it sends. Once it lapses
    /// and another router advertises the VRID, the kernel fences the
    /// instance's guarded VIPs, even after this process is gone. No-op on
    /// the raw path, which does not outlive the process.
    /// The adverts of one wake-up renew theirs in one system call.
    pub fn renew_leases(&mut self, leases: &[(VridKey, u64)]) -> io::Result<()> {
        if let Inner::Ebpf { dp, .. } = &mut self.inner {
            dp.set_leases(leases).map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Whether the kernel can keep a healthy master's adverts from the agent
    /// and time them ([`Datapath::set_quiet`], [`Datapath::heard`]): the
    /// eBPF datapath. The raw-socket receiver wakes the agent per advert.
    pub fn times_adverts(&self) -> bool {
        matches!(self.inner, Inner::Ebpf { .. })
    }

    /// From now on adverts for `key` identical to `advert` are only timed in
    /// the kernel, not delivered; `None`: deliver every advert again.
    /// No-op on the raw path.
    pub fn set_quiet(&mut self, key: VridKey, advert: Option<QuietAdvert>) -> io::Result<()> {
        if let Inner::Ebpf { dp, .. } = &mut self.inner {
            dp.set_quiet(key, advert).map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// When the kernel last heard a kept advert for `key`, and how many it
    /// kept. `None` on the raw path or before the first.
    pub fn heard(&mut self, key: &VridKey) -> Option<Heard> {
        match &mut self.inner {
            Inner::Ebpf { dp, .. } => dp.heard(key).ok().flatten(),
            Inner::Raw { .. } => None,
        }
    }

    /// A clean stop: the pinned links are released (they detach when the
    /// datapath is dropped). Without it the kernel half outlives the process.
    pub fn release_pins(&mut self) {
        if let Inner::Ebpf { dp, .. } = &mut self.inner {
            dp.release_pins();
        }
    }

    /// Where the XDP links are pinned, when they are.
    pub fn pin_dir(&self) -> Option<&pin::PinDir> {
        match &self.inner {
            Inner::Ebpf { dp, .. } => dp.pin_dir(),
            Inner::Raw { .. } => None,
        }
    }

    /// The last claim of a guarded VIP by another MAC the kernel saw
    /// (reported or not): its CLOCK_MONOTONIC time and the claimant. None
    /// on the raw path or when unguarded.
    pub fn last_claim(&mut self, ifindex: u32, addr: IpAddr) -> Option<(u64, [u8; 6])> {
        let Inner::Ebpf { dp, .. } = &mut self.inner else {
            return None;
        };
        let g = dp.guard_entry(&guard_key(ifindex, addr)).ok()??;
        (g.last_claim_ns != 0).then_some((g.last_claim_ns, g.last_claim_mac))
    }

    /// Stops guarding `addr` on `ifindex`.
    pub fn unguard(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<()> {
        if let Inner::Ebpf { dp, .. } = &mut self.inner {
            dp.remove_guard(&guard_key(ifindex, addr))
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Appends pending adverts, decoded, without waiting: the runtime calls
    /// it before acting on a timer, so an advert that arrived in time is
    /// never missed.
    pub fn drain(&mut self, out: &mut Vec<Received>) -> io::Result<usize> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.drain_events(&mut scratch);
        out.extend(scratch.drain(..).map(|e| event::decode(&e)));
        self.scratch = scratch;
        self.collect_claims();
        r
    }

    /// [`Datapath::recv`] without decoding: the records as the kernel (or
    /// the raw receiver) wrote them, for tests that check them byte for byte.
    pub async fn recv_events(&mut self, out: &mut Vec<AdvertEvent>) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Ebpf { ring, .. } => loop {
                let mut guard = ring.readable_mut().await?;
                let n = guard.get_inner_mut().drain(out);
                guard.clear_ready();
                if n > 0 {
                    return Ok(n);
                }
            },
            Inner::Raw { rx, v4, v6 } => loop {
                tokio::select! {
                    g = v4.readable() => g?.clear_ready(),
                    g = v6.readable() => g?.clear_ready(),
                }
                let n = rx.drain(out)?;
                if n > 0 {
                    return Ok(n);
                }
            },
        }
    }

    /// [`Datapath::drain`] without decoding.
    pub fn drain_events(&mut self, out: &mut Vec<AdvertEvent>) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Ebpf { ring, .. } => Ok(ring.get_mut().drain(out)),
            Inner::Raw { rx, .. } => rx.drain(out),
        }
    }

    /// Drop/accept counters by reason (kernel counters on the eBPF path).
    pub fn counters(&self) -> [u64; COUNTER_COUNT as usize] {
        match &self.inner {
            Inner::Ebpf { dp, .. } => dp.counters().unwrap_or([0; COUNTER_COUNT as usize]),
            Inner::Raw { rx, .. } => rx.counters(),
        }
    }

    /// Adds or replaces an instance's VRID at run time (reload), attaching
    /// to its interface first if that is new.
    pub fn set_vrid(&mut self, spec: &VridSpec) -> io::Result<()> {
        match &mut self.inner {
            Inner::Ebpf { dp, _joins, .. } => {
                if !dp.attachments().iter().any(|(i, _)| *i == spec.ifname) {
                    let mode = dp
                        .attach(&spec.ifname, self.attach)
                        .map_err(io::Error::other)?;
                    tracing::info!(interface = %spec.ifname, mode = %mode, "datapath attached");
                    dp.set_policy(spec.key.ifindex, IfacePolicy::DEFAULT)
                        .map_err(io::Error::other)?;
                }
                dp.set_vrid(spec.key, spec.cfg).map_err(io::Error::other)?;
                _joins.set_vrid(spec.key, spec.cfg, spec.group, None)
            }
            Inner::Raw { rx, .. } => rx.set_vrid(spec.key, spec.cfg, spec.group, spec.vmac_ifindex),
        }
    }

    pub fn remove_vrid(&mut self, key: &VridKey) -> io::Result<()> {
        match &mut self.inner {
            Inner::Ebpf { dp, _joins, .. } => {
                _joins.remove_vrid(key);
                dp.remove_vrid(key).map_err(io::Error::other)
            }
            Inner::Raw { rx, .. } => {
                rx.remove_vrid(key);
                Ok(())
            }
        }
    }
}

/// The guard map's key for a VIP.
pub fn guard_key(ifindex: u32, addr: IpAddr) -> GuardKey {
    match addr {
        IpAddr::V4(a) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&a.octets());
            GuardKey::new(ifindex, FAMILY_IPV4, bytes)
        }
        IpAddr::V6(a) => GuardKey::new(ifindex, FAMILY_IPV6, a.octets()),
    }
}
