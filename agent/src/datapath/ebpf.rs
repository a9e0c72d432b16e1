//! Loading, attaching and talking to the kernel datapath.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{NlOptions, TcAttachOptions, qdisc_add_clsact, qdisc_detach_program},
    },
};
use thiserror::Error;
use xvrrpd_common::{
    AdvertEvent, COUNTER_COUNT, ClaimEvent, Counter, DownEvent, FenceOwner, GuardKey, GuardValue,
    Heard, IfacePolicy, MAP_ARMED, MAP_COUNTERS, MAP_EVENTS, MAP_GUARDS, MAP_HEARD, MAP_LEASES,
    MAP_NO_ACCEPT, MAP_OWNERS, MAP_POLICY, MAP_QUIET, MAP_TIMERS, MAP_VMAC_BASES, MAP_VRIDS,
    PROG_TC, PROG_TC_PLAIN, PROG_VMAC_EGRESS, PROG_XDP, PROG_XDP_PLAIN, QuietAdvert, VmacBase,
    VridConfig, VridKey,
};

use super::pin::PinDir;

/// The eBPF object built by `build.rs`; empty when built without bpf-linker.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xvrrpd-datapath"));

/// Whether this binary carries the eBPF datapath.
pub fn object_embedded() -> bool {
    !OBJECT.is_empty()
}

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error(
        "this xvrrpd was built without its eBPF datapath (no bpf-linker at build time): \
         run `cargo xtask setup` and rebuild, or run with --no-ebpf"
    )]
    NotBuiltIn,
    #[error(
        "loading the eBPF datapath failed: {0} (needs root or CAP_BPF + CAP_NET_ADMIN and a kernel \
         with BTF; --no-ebpf uses the raw-socket receiver instead)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no {0}: it does not match this agent, rebuild both")]
    Missing(&'static str),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "cannot attach to {ifname}: XDP native: {native}; XDP generic: {generic}; TC: {tc} \
         (does the interface exist? is another XDP program attached?)"
    )]
    Attach {
        ifname: String,
        native: String,
        generic: String,
        tc: String,
    },
    #[error("reading the ring buffer: {0}")]
    Io(#[from] io::Error),
    #[error("pinning {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error(
        "{0} is not available on a datapath adopted from the previous run: stop xvrrpd, run \
         `xvrrpd cleanup` and start it again to load it"
    )]
    LacksWhenAdopted(&'static str),
}

/// Every map of the datapath (pinned as [`PinDir::map`] names them).
const ALL_MAPS: [&str; 12] = [
    MAP_EVENTS,
    MAP_COUNTERS,
    MAP_VRIDS,
    MAP_POLICY,
    MAP_GUARDS,
    MAP_LEASES,
    MAP_OWNERS,
    MAP_ARMED,
    MAP_NO_ACCEPT,
    MAP_QUIET,
    MAP_HEARD,
    MAP_TIMERS,
];

/// Which programs of the object run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Programs {
    xdp: &'static str,
    tc: &'static str,
    /// They run the master-down timer in the kernel (BPF timers).
    timers: bool,
}

impl Programs {
    const TIMED: Programs = Programs {
        xdp: PROG_XDP,
        tc: PROG_TC,
        timers: true,
    };
    const PLAIN: Programs = Programs {
        xdp: PROG_XDP_PLAIN,
        tc: PROG_TC_PLAIN,
        timers: false,
    };
}
/// The pinned XDP program's file name: it names the object it came from,
/// so a restart adopts only a program this very binary would load.
fn program_pin_name(programs: Programs) -> String {
    // FNV-1a: stable across builds and Rust versions, unlike `Hasher`.
    let hash = OBJECT.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!(
        "prog_{}_{hash:016x}",
        programs.xdp.trim_start_matches("xvrrpd_")
    )
}

/// How the datapath got attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    XdpNative,
    XdpGeneric,
    Tc,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::XdpNative => "XDP (native)",
            AttachMode::XdpGeneric => "XDP (generic)",
            AttachMode::Tc => "TC ingress",
        })
    }
}

/// Whether TC programs attach as tcx links (kernel 6.6 and later, as aya
/// decides): any number of programs share the hook, and a link can be
/// pinned like an XDP one.
pub fn tcx_available() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// The modes `--attach auto` tries on an interface of `driver`, in order,
/// chosen by measurement (docs/datapath.md, "Attach modes").
pub fn auto_order(driver: Option<&str>, tcx: bool) -> [Option<AttachMode>; 3] {
    use AttachMode::{Tc, XdpGeneric, XdpNative};
    match (tcx, driver) {
        // tcx shares the NIC: an XDP program loaded after xvrrpd (a load
        // balancer's, by xdp-loader or `ip link`) still gets the XDP hook.
        // Only where the hook is taken does XDP come next.
        (true, Some("veth")) => [Some(Tc), Some(XdpGeneric), Some(XdpNative)],
        (true, _) => [Some(Tc), Some(XdpNative), Some(XdpGeneric)],
        // veth: native XDP moves the receiver's work into a NAPI poll the
        // sender pays for, and its XDP_TX answers (the fence's) reach the
        // peer only if the peer runs an XDP program too. Generic XDP costs
        // less here and answers everywhere.
        (false, Some("veth")) => [Some(XdpGeneric), Some(XdpNative), Some(Tc)],
        // Real drivers: native XDP sees the frame before an skb exists.
        (false, _) => [Some(XdpNative), Some(XdpGeneric), Some(Tc)],
    }
}

/// What modes to try, in order (tests force one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachPreference {
    /// By [`auto_order`].
    #[default]
    Auto,
    Only(AttachMode),
    /// TC as a `clsact` filter, as before 6.6, also where tcx exists.
    TcClsact,
}

/// Removes the `clsact` filters of xvrrpd's TC programs from the
/// interfaces of this network namespace, and says from which. No pin holds
/// such a filter (TC before 6.6, or `--attach tc-clsact`): after a crash it
/// goes on running, consuming adverts for a ring nobody reads, until it is
/// deleted. A start does this once the leftover VIPs are gone (until then
/// the old filter's fence guards them), and so does `xvrrpd cleanup`. One
/// qdisc dump finds the interfaces that can hold a filter at all, so a
/// host with a thousand VLANs pays for the few with a `clsact` qdisc.
pub async fn remove_leftover_tc_filters() -> Vec<String> {
    let ifindexes = match crate::net::link::with_clsact().await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!("listing clsact qdiscs: {e}");
            return Vec::new();
        }
    };
    let mut cleaned = Vec::new();
    for ifindex in ifindexes {
        let Ok(ifname) = crate::net::link::ifname_by_index(ifindex) else {
            continue;
        };
        // Either of the two programs (with or without BPF timers).
        let removed = [PROG_TC, PROG_TC_PLAIN]
            .into_iter()
            .filter(|prog| qdisc_detach_program(&ifname, TcAttachType::Ingress, prog).is_ok())
            .count();
        if removed > 0 {
            cleaned.push(ifname);
        }
    }
    cleaned
}

/// The loaded programs and their maps. Dropping it detaches everything
/// but the pinned XDP links (see [`EbpfDatapath::pin_links`]).
pub struct EbpfDatapath {
    /// The loaded object; `None` when adopted from the previous run's pins
    /// (only its XDP program and maps are there then).
    bpf: Option<Ebpf>,
    /// The XDP program of an adopted datapath.
    adopted_xdp: Option<Xdp>,
    programs: Programs,
    /// Every map, taken out of the object (or opened from the pins).
    maps: std::collections::HashMap<&'static str, Map>,
    attached: Vec<(String, AttachMode)>,
    /// Where XDP links are pinned; `None`: not pinned.
    pins: Option<PinDir>,
    pinned: Vec<PinnedLink>,
    /// Links a clean stop unpinned: they detach when the datapath is
    /// dropped, not when unpinned (see [`Self::release_pins`]).
    unpinned: Vec<FdLink>,
}

fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl EbpfDatapath {
    /// Loads the XDP program into the kernel (verified, not yet attached).
    /// The TC program is verified only when an interface needs it: each
    /// verification costs startup time.
    ///
    /// With `kernel_timers`, the programs that run the master-down timer in
    /// the kernel are tried first; a kernel without BPF timers (before
    /// 5.15) refuses them and gets the plain ones, whose down timers the
    /// agent runs.
    pub fn load(kernel_timers: bool) -> Result<Self, DatapathError> {
        if !object_embedded() {
            return Err(DatapathError::NotBuiltIn);
        }
        let mut bpf = EbpfLoader::new().load(OBJECT)?;
        let mut load = |p: Programs| -> Result<(), DatapathError> {
            let xdp: &mut Xdp = bpf
                .program_mut(p.xdp)
                .ok_or(DatapathError::Missing(p.xdp))?
                .try_into()
                .map_err(prog_err(p.xdp))?;
            xdp.load().map_err(prog_err(p.xdp))
        };
        let programs = match kernel_timers {
            true => match load(Programs::TIMED) {
                Ok(()) => Programs::TIMED,
                Err(e) => {
                    tracing::info!(
                        "datapath: no master-down timer in the kernel ({e}); the agent runs them"
                    );
                    load(Programs::PLAIN)?;
                    Programs::PLAIN
                }
            },
            false => {
                load(Programs::PLAIN)?;
                Programs::PLAIN
            }
        };
        let mut maps = std::collections::HashMap::new();
        for name in ALL_MAPS {
            // The programs' instructions already hold the maps' descriptors.
            maps.insert(
                name,
                bpf.take_map(name).ok_or(DatapathError::Missing(name))?,
            );
        }
        Ok(Self {
            bpf: Some(bpf),
            adopted_xdp: None,
            programs,
            maps,
            attached: Vec::new(),
            pins: None,
            pinned: Vec::new(),
            unpinned: Vec::new(),
        })
    }

    /// Adopts the datapath a previous run of this binary left pinned in
    /// `pins`: its verified XDP program, its maps and its links on the
    /// interfaces in `ifnames` (links on others are released). Its state is
    /// cleared (the first configuration writes it again) and its queued
    /// events dropped. `None` when nothing adoptable is there, or when an
    /// interface of `ifnames` has no pinned link in a mode `pref` allows:
    /// an adopted datapath has no TC program to attach there (a clsact
    /// filter is never pinned), so the programs are loaded afresh.
    pub fn adopt(
        pins: &PinDir,
        ifnames: &[String],
        pref: AttachPreference,
    ) -> Result<Option<Self>, DatapathError> {
        if !object_embedded() {
            return Ok(None);
        }
        let Some((programs, prog)) = [Programs::TIMED, Programs::PLAIN]
            .into_iter()
            .map(|p| (p, pins.path().join(program_pin_name(p))))
            .find(|(_, path)| path.exists())
        else {
            return Ok(None);
        };
        let xdp = Xdp::from_pin(&prog, aya_obj::programs::XdpAttachType::Interface)
            .map_err(prog_err(programs.xdp))?;
        let mut maps = std::collections::HashMap::new();
        for name in ALL_MAPS {
            let data = MapData::from_pin(pins.map(name)).map_err(map_err(name))?;
            let map = match name {
                MAP_EVENTS => Map::RingBuf(data),
                MAP_COUNTERS => Map::PerCpuArray(data),
                MAP_ARMED | MAP_NO_ACCEPT => Map::Array(data),
                _ => Map::HashMap(data),
            };
            maps.insert(name, map);
        }
        let mut dp = Self {
            bpf: None,
            adopted_xdp: Some(xdp),
            programs,
            maps,
            attached: Vec::new(),
            pins: Some(pins.clone()),
            pinned: Vec::new(),
            unpinned: Vec::new(),
        };
        for (path, ifindex, mode) in pins.links()? {
            let link = PinnedLink::from_pin(&path).map_err(|e| DatapathError::Pin {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            match ifname_of(ifindex).filter(|n| ifnames.contains(n)) {
                Some(ifname) => {
                    dp.pinned.push(link);
                    dp.attached.push((ifname, mode));
                }
                None => {
                    let _ = link.unpin();
                }
            }
        }
        let allowed = |mode: AttachMode| match pref {
            AttachPreference::Auto => true,
            AttachPreference::Only(m) => m == mode,
            AttachPreference::TcClsact => false,
        };
        let unserved: Vec<&str> = ifnames
            .iter()
            .filter(|n| !dp.attached.iter().any(|(a, m)| a == *n && allowed(*m)))
            .map(String::as_str)
            .collect();
        if !unserved.is_empty() {
            tracing::info!(
                "datapath: not adopting the previous run's: no pinned link for {} as asked; \
                 loading afresh",
                unserved.join(", ")
            );
            return Ok(None);
        }
        dp.clear_state()?;
        Ok(Some(dp))
    }

    /// Empties what the kernel half remembers of a previous run: entries,
    /// leases, guards, owners, the armed fence and queued events.
    fn clear_state(&mut self) -> Result<(), DatapathError> {
        fn clear<K: aya::Pod, V: aya::Pod>(
            dp: &mut EbpfDatapath,
            name: &'static str,
        ) -> Result<(), DatapathError> {
            let mut map = dp.hash_map::<K, V>(name)?;
            let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
            for k in keys {
                absent_ok(map.remove(&k)).map_err(map_err(name))?;
            }
            Ok(())
        }
        clear::<VridKey, VridConfig>(self, MAP_VRIDS)?;
        clear::<u32, IfacePolicy>(self, MAP_POLICY)?;
        clear::<GuardKey, GuardValue>(self, MAP_GUARDS)?;
        clear::<VridKey, u64>(self, MAP_LEASES)?;
        clear::<VridKey, FenceOwner>(self, MAP_OWNERS)?;
        clear::<VridKey, QuietAdvert>(self, MAP_QUIET)?;
        clear::<VridKey, Heard>(self, MAP_HEARD)?;
        let armed = self.map_mut(MAP_ARMED)?;
        let mut armed: Array<&mut MapData, u64> =
            Array::try_from(armed).map_err(map_err(MAP_ARMED))?;
        armed.set(0, 0, 0).map_err(map_err(MAP_ARMED))?;
        self.set_no_accept(false)?;
        let events = self.map_mut(MAP_EVENTS)?;
        let mut ring: RingBuf<&mut MapData> =
            RingBuf::try_from(events).map_err(map_err(MAP_EVENTS))?;
        while ring.next().is_some() {}
        Ok(())
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.maps.get_mut(name).ok_or(DatapathError::Missing(name))
    }

    fn xdp_mut(&mut self) -> Result<&mut Xdp, DatapathError> {
        if let Some(xdp) = self.adopted_xdp.as_mut() {
            return Ok(xdp);
        }
        let name = self.programs.xdp;
        let bpf = self.bpf.as_mut().ok_or(DatapathError::Missing(name))?;
        bpf.program_mut(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(prog_err(name))
    }

    fn xdp_ref(&self) -> Result<&Xdp, DatapathError> {
        if let Some(xdp) = self.adopted_xdp.as_ref() {
            return Ok(xdp);
        }
        let name = self.programs.xdp;
        let bpf = self.bpf.as_ref().ok_or(DatapathError::Missing(name))?;
        bpf.program(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(prog_err(name))
    }

    /// The loaded object (a fresh load, not an adopted datapath).
    fn object(&mut self, what: &'static str) -> Result<&mut Ebpf, DatapathError> {
        self.bpf
            .as_mut()
            .ok_or(DatapathError::LacksWhenAdopted(what))
    }

    /// XDP links attached from now on are pinned in `pins`: the program,
    /// its maps and the fence stay in the kernel if this process dies. The
    /// fence's maps are pinned beside them for the warden
    /// ([`super::fence::FenceView`]).
    pub fn pin_links(&mut self, pins: PinDir) -> Result<(), DatapathError> {
        let pin_err = |path: &std::path::Path, e: &dyn std::fmt::Display| DatapathError::Pin {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        for name in ALL_MAPS {
            let path = pins.map(name);
            let _ = std::fs::remove_file(&path);
            let map = self.maps.get(name).ok_or(DatapathError::Missing(name))?;
            map.pin(&path).map_err(|e| pin_err(&path, &e))?;
        }
        // The program too, so that a restart can adopt it unverified.
        let path = pins.path().join(program_pin_name(self.programs));
        let _ = std::fs::remove_file(&path);
        self.xdp_mut()?.pin(&path).map_err(|e| pin_err(&path, &e))?;
        self.pins = Some(pins);
        Ok(())
    }

    /// The pin directory, when links are pinned.
    pub fn pin_dir(&self) -> Option<&PinDir> {
        self.pins.as_ref()
    }

    /// A clean stop: unpins the links, so they detach when the datapath is
    /// dropped. Not here: a detach takes the kernel's RTNL lock (and waits
    /// for an RCU grace period), and on a shared kernel (containers, labs)
    /// the successor adding its VIPs would wait for it.
    pub fn release_pins(&mut self) {
        for link in self.pinned.drain(..) {
            match link.unpin() {
                Ok(link) => self.unpinned.push(link),
                Err(e) => tracing::warn!("datapath: unpinning a link: {e}"),
            }
        }
        if let Some(dir) = &self.pins
            && let Err(e) = dir.clear()
        {
            tracing::warn!("datapath: removing {}: {e}", dir.path().display());
        }
    }

    /// Pins the XDP link just attached to `ifname`. A link that cannot be
    /// pinned (no BPF link support, a pin error) is attached again unpinned:
    /// the datapath then lives as long as the process, as without pins.
    fn pin_xdp(
        &mut self,
        ifname: &str,
        xmode: XdpMode,
        id: aya::programs::xdp::XdpLinkId,
    ) -> Result<(), DatapathError> {
        let Some(dir) = self.pins.clone() else {
            return Ok(());
        };
        let xdp = self.xdp_mut()?;
        let link = xdp.take_link(id).map_err(prog_err(PROG_XDP))?;
        let pinned = pin_taken_link(ifname, FdLink::try_from(link), |i| {
            dir.xdp_link(i, xmode == XdpMode::Skb)
        });
        match pinned {
            Ok(p) => self.pinned.push(p),
            Err(()) => {
                xdp.attach(ifname, xmode).map_err(prog_err(PROG_XDP))?;
            }
        }
        Ok(())
    }

    /// Pins the tcx link just attached to `ifname`, as [`Self::pin_xdp`]
    /// does for XDP. (A clsact filter has no link to pin: it stays with the
    /// program and goes when it does, or stays after a crash until
    /// [`remove_leftover_tc_filters`].)
    fn pin_tc(
        &mut self,
        ifname: &str,
        id: aya::programs::tc::SchedClassifierLinkId,
    ) -> Result<(), DatapathError> {
        let Some(dir) = self.pins.clone() else {
            return Ok(());
        };
        let prog = self.tc_program()?;
        let link = prog.take_link(id).map_err(prog_err(PROG_TC))?;
        match pin_taken_link(ifname, FdLink::try_from(link), |i| dir.tc_link(i)) {
            Ok(p) => self.pinned.push(p),
            Err(()) => {
                prog.attach(ifname, TcAttachType::Ingress)
                    .map_err(prog_err(PROG_TC))?;
            }
        }
        Ok(())
    }

    /// Attaches to `ifname` in the modes `pref` allows, in [`auto_order`]'s
    /// order for its driver (or the one mode asked for).
    pub fn attach(
        &mut self,
        ifname: &str,
        pref: AttachPreference,
    ) -> Result<AttachMode, DatapathError> {
        let order = match pref {
            AttachPreference::Auto => {
                auto_order(crate::net::link::driver(ifname).as_deref(), tcx_available())
            }
            AttachPreference::Only(m) => [Some(m), None, None],
            AttachPreference::TcClsact => [Some(AttachMode::Tc), None, None],
        };
        let clsact = pref == AttachPreference::TcClsact || !tcx_available();
        let skipped = || "not tried".to_string();
        let (mut native, mut generic, mut tc) = (skipped(), skipped(), skipped());
        for mode in order.into_iter().flatten() {
            let xmode = match mode {
                AttachMode::XdpNative => XdpMode::Driver,
                AttachMode::XdpGeneric => XdpMode::Skb,
                AttachMode::Tc => {
                    // A clsact filter needs its qdisc; a tcx link needs
                    // none, so none is left behind.
                    if clsact {
                        let _ = qdisc_add_clsact(ifname);
                    }
                    // An adopted datapath has no TC program: XDP is next.
                    let prog = match self.tc_program() {
                        Ok(p) => p,
                        Err(e) => {
                            tc = e.to_string();
                            continue;
                        }
                    };
                    let attached = if clsact {
                        let nl = TcAttachOptions::Netlink(NlOptions::default());
                        prog.attach_with_options(ifname, TcAttachType::Ingress, nl)
                    } else {
                        prog.attach(ifname, TcAttachType::Ingress)
                    };
                    match attached {
                        Ok(id) => {
                            if !clsact {
                                self.pin_tc(ifname, id)?;
                            }
                            self.attached.push((ifname.to_string(), AttachMode::Tc));
                            return Ok(AttachMode::Tc);
                        }
                        Err(e) => tc = error_chain(&e),
                    }
                    continue;
                }
            };
            match self.xdp_mut()?.attach(ifname, xmode) {
                Ok(id) => {
                    self.pin_xdp(ifname, xmode, id)?;
                    self.attached.push((ifname.to_string(), mode));
                    return Ok(mode);
                }
                Err(e) if mode == AttachMode::XdpNative => native = error_chain(&e),
                Err(e) => generic = error_chain(&e),
            }
        }
        Err(DatapathError::Attach {
            ifname: ifname.to_string(),
            native,
            generic,
            tc,
        })
    }

    /// The TC program, verified on first use.
    fn tc_program(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        let name = self.programs.tc;
        loaded_classifier(self.object(name)?, name)
    }

    /// Whether the programs run the master-down timer in the kernel.
    pub fn kernel_timers(&self) -> bool {
        self.programs.timers
    }

    /// Interfaces attached so far and how.
    pub fn attachments(&self) -> &[(String, AttachMode)] {
        &self.attached
    }

    /// One of the object's hash maps, typed.
    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<BpfHashMap<&mut MapData, K, V>, DatapathError> {
        BpfHashMap::try_from(self.map_mut(name)?).map_err(map_err(name))
    }

    fn vrids(&mut self) -> Result<BpfHashMap<&mut MapData, VridKey, VridConfig>, DatapathError> {
        self.hash_map(MAP_VRIDS)
    }

    fn leases(&mut self) -> Result<BpfHashMap<&mut MapData, VridKey, u64>, DatapathError> {
        self.hash_map(MAP_LEASES)
    }

    fn guards(&mut self) -> Result<BpfHashMap<&mut MapData, GuardKey, GuardValue>, DatapathError> {
        self.hash_map(MAP_GUARDS)
    }

    /// Tells the kernel to deliver adverts for `key`, checked per `cfg`.
    pub fn set_vrid(&mut self, key: VridKey, cfg: VridConfig) -> Result<(), DatapathError> {
        self.vrids()?
            .insert(key, cfg, 0)
            .map_err(map_err(MAP_VRIDS))
    }

    pub fn remove_vrid(&mut self, key: &VridKey) -> Result<(), DatapathError> {
        absent_ok(self.leases()?.remove(key)).map_err(map_err(MAP_LEASES))?;
        self.set_quiet(*key, None)?;
        absent_ok(self.hash_map::<VridKey, Heard>(MAP_HEARD)?.remove(key))
            .map_err(map_err(MAP_HEARD))?;
        absent_ok(self.vrids()?.remove(key)).map_err(map_err(MAP_VRIDS))
    }

    /// The agent vouches for being MASTER of `key` until `until_ns`.
    pub fn set_lease(&mut self, key: VridKey, until_ns: u64) -> Result<(), DatapathError> {
        self.leases()?
            .insert(key, until_ns, 0)
            .map_err(map_err(MAP_LEASES))
    }

    /// The lease of `key`, as the kernel holds it.
    pub fn lease(&mut self, key: &VridKey) -> Result<Option<u64>, DatapathError> {
        match self.leases()?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_err(MAP_LEASES)(e)),
        }
    }

    /// [`EbpfDatapath::set_lease`] for many VRIDs in one system call (the
    /// adverts of one wake-up), one call each where the kernel has no
    /// batch update.
    pub fn set_leases(&mut self, leases: &[(VridKey, u64)]) -> Result<(), DatapathError> {
        if leases.is_empty() {
            return Ok(());
        }
        let map = self.map_mut(MAP_LEASES)?;
        let Map::HashMap(data) = map else {
            return Err(DatapathError::Missing(MAP_LEASES));
        };
        let keys: Vec<VridKey> = leases.iter().map(|(k, _)| *k).collect();
        let values: Vec<u64> = leases.iter().map(|(_, v)| *v).collect();
        match update_batch(data.fd().as_fd().as_raw_fd(), &keys, &values) {
            Ok(()) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::ENOTSUP) =>
            {
                for (k, v) in leases {
                    self.set_lease(*k, *v)?;
                }
                Ok(())
            }
            Err(e) => Err(DatapathError::Io(e)),
        }
    }

    /// Adverts for `key` identical to `advert` are only timed from now on
    /// (see [`QuietAdvert`]); `None`: every advert wakes the agent again.
    pub fn set_quiet(
        &mut self,
        key: VridKey,
        advert: Option<QuietAdvert>,
    ) -> Result<(), DatapathError> {
        let mut map = self.hash_map::<VridKey, QuietAdvert>(MAP_QUIET)?;
        match advert {
            Some(a) => map.insert(key, a, 0),
            None => absent_ok(map.remove(&key)),
        }
        .map_err(map_err(MAP_QUIET))
    }

    /// What the kernel recorded of the adverts it kept for `key`.
    pub fn heard(&mut self, key: &VridKey) -> Result<Option<Heard>, DatapathError> {
        match self.hash_map::<VridKey, Heard>(MAP_HEARD)?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_err(MAP_HEARD)(e)),
        }
    }

    /// Starts (or updates) watching claims of a VIP by MACs other than
    /// `value.mac`. An update keeps the kernel's last report time.
    pub fn set_guard(&mut self, key: GuardKey, mut value: GuardValue) -> Result<(), DatapathError> {
        let mut map = self.guards()?;
        if let Ok(old) = map.get(&key, 0) {
            value.last_report_ns = old.last_report_ns;
            value.last_claim_ns = old.last_claim_ns;
            value.last_claim_mac = old.last_claim_mac;
        }
        map.insert(key, value, 0).map_err(map_err(MAP_GUARDS))
    }

    /// The guard map's entry for `key` (the kernel's claim times in it).
    pub fn guard_entry(&mut self, key: &GuardKey) -> Result<Option<GuardValue>, DatapathError> {
        match self.guards()?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_err(MAP_GUARDS)(e)),
        }
    }

    pub fn remove_guard(&mut self, key: &GuardKey) -> Result<(), DatapathError> {
        absent_ok(self.guards()?.remove(key)).map_err(map_err(MAP_GUARDS))
    }

    /// Whether any guarded VIP is in non-accept mode: only then does other
    /// traffic look its destination up (see [`xvrrpd_common::GUARD_FLAG_NO_ACCEPT`]).
    pub fn set_no_accept(&mut self, on: bool) -> Result<(), DatapathError> {
        let map = self.map_mut(MAP_NO_ACCEPT)?;
        let mut slot: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(map_err(MAP_NO_ACCEPT))?;
        slot.set(0, u32::from(on), 0)
            .map_err(map_err(MAP_NO_ACCEPT))
    }

    pub fn set_policy(&mut self, ifindex: u32, policy: IfacePolicy) -> Result<(), DatapathError> {
        self.hash_map::<u32, IfacePolicy>(MAP_POLICY)?
            .insert(ifindex, policy, 0)
            .map_err(map_err(MAP_POLICY))
    }

    /// Kernel counters summed over CPUs, indexed by [`Counter`].
    pub fn counters(&self) -> Result<[u64; COUNTER_COUNT as usize], DatapathError> {
        let map = self
            .maps
            .get(MAP_COUNTERS)
            .ok_or(DatapathError::Missing(MAP_COUNTERS))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_COUNTERS))?;
        let mut out = [0u64; COUNTER_COUNT as usize];
        for c in Counter::ALL {
            let per_cpu = arr.get(&(c as u32), 0).map_err(map_err(MAP_COUNTERS))?;
            out[c as usize] = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Takes the ring buffer out (once) for a reader.
    pub fn take_events(&mut self) -> Result<EventRing, DatapathError> {
        let map = self
            .maps
            .remove(MAP_EVENTS)
            .ok_or(DatapathError::Missing(MAP_EVENTS))?;
        Ok(EventRing {
            ring: RingBuf::try_from(map).map_err(map_err(MAP_EVENTS))?,
            claims: Vec::new(),
            downs: Vec::new(),
        })
    }

    /// Runs the XDP program on `frame` through `BPF_PROG_TEST_RUN`:
    /// returns the verdict and the kernel-measured time per run.
    pub fn test_run_xdp(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DatapathError> {
        run(self.xdp_ref()?, frame, repeat).map_err(prog_err(PROG_XDP))
    }

    /// Runs the XDP program once on `frame`; returns the verdict and the
    /// frame as the program left it (for `XDP_TX` answers).
    pub fn test_run_xdp_out(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        run_out(self.xdp_ref()?, frame).map_err(prog_err(PROG_XDP))
    }

    /// As [`Self::test_run_xdp_out`], on the TC program.
    pub fn test_run_tc_out(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        run_out(self.tc_program()?, frame).map_err(prog_err(PROG_TC))
    }

    /// Runs one of the object's benchmark reference programs
    /// (`xvrrpd_bench_pass`, `xvrrpd_bench_count`), loading it on first use.
    pub fn test_run_reference(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DatapathError> {
        let prog: &mut Xdp = self
            .object(name)?
            .program_mut(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(prog_err(name))?;
        if prog.fd().is_err() {
            prog.load().map_err(prog_err(name))?;
        }
        run(prog, frame, repeat).map_err(prog_err(name))
    }

    /// Same for the TC program (verified on first use).
    pub fn test_run_tc(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DatapathError> {
        let prog = self.tc_program()?;
        run(prog, frame, repeat).map_err(prog_err(PROG_TC))
    }
}

/// The TC egress filter on the VMACs xvrrpd makes (the eBPF `vmac`
/// module): their IGMP/MLD reports leave from the base. Loaded on its own,
/// with the object's other maps at their smallest, as soon as a VMAC
/// exists: before the start-up raw sockets join the VRRP group on it, so
/// not even that membership is reported from the virtual MAC. Its filters
/// are `clsact` ones, never pinned: they outlive a crash with the VMAC and
/// go with it.
pub struct VmacFilter {
    bpf: Ebpf,
}

impl VmacFilter {
    pub fn load() -> Result<Self, DatapathError> {
        if !object_embedded() {
            return Err(DatapathError::NotBuiltIn);
        }
        let mut loader = EbpfLoader::new();
        // The ring's smallest size is a page; the rest hold nothing here.
        loader.map_max_entries(MAP_EVENTS, 4096);
        for name in [
            MAP_VRIDS, MAP_POLICY, MAP_GUARDS, MAP_LEASES, MAP_OWNERS, MAP_QUIET, MAP_HEARD,
        ] {
            loader.map_max_entries(name, 1);
        }
        let mut f = Self {
            bpf: loader.load(OBJECT)?,
        };
        f.program()?;
        Ok(f)
    }

    /// Sends the IGMP/MLD reports leaving the VMAC `vmac` out of its base
    /// instead, from `base.mac`. A previous run's filter there is replaced.
    pub fn attach(
        &mut self,
        vmac: &str,
        vmac_ifindex: u32,
        base: VmacBase,
    ) -> Result<(), DatapathError> {
        self.bases()?
            .insert(vmac_ifindex, base, 0)
            .map_err(map_err(MAP_VMAC_BASES))?;
        let prog = self.program()?;
        let _ = qdisc_add_clsact(vmac);
        let _ = qdisc_detach_program(vmac, TcAttachType::Egress, PROG_VMAC_EGRESS);
        let nl = TcAttachOptions::Netlink(NlOptions::default());
        prog.attach_with_options(vmac, TcAttachType::Egress, nl)
            .map_err(prog_err(PROG_VMAC_EGRESS))?;
        Ok(())
    }

    /// Forgets a VMAC [`Self::attach`] served (it is gone).
    pub fn forget(&mut self, vmac_ifindex: u32) -> Result<(), DatapathError> {
        absent_ok(self.bases()?.remove(&vmac_ifindex)).map_err(map_err(MAP_VMAC_BASES))
    }

    /// The VMACs' bases, by the VMAC's ifindex.
    pub fn bases(&mut self) -> Result<BpfHashMap<&mut MapData, u32, VmacBase>, DatapathError> {
        let map = self
            .bpf
            .map_mut(MAP_VMAC_BASES)
            .ok_or(DatapathError::Missing(MAP_VMAC_BASES))?;
        BpfHashMap::try_from(map).map_err(map_err(MAP_VMAC_BASES))
    }

    fn program(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        loaded_classifier(&mut self.bpf, PROG_VMAC_EGRESS)
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`; the skb is on
    /// the loopback interface, ifindex 1): its verdict and the frame as it
    /// left it.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        run_out(self.program()?, frame).map_err(prog_err(PROG_VMAC_EGRESS))
    }
}

/// The TC program `name` of `bpf`, verified on first use.
fn loaded_classifier<'a>(
    bpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    let prog: &mut SchedClassifier = bpf
        .program_mut(name)
        .ok_or(DatapathError::Missing(name))?
        .try_into()
        .map_err(prog_err(name))?;
    if prog.fd().is_err() {
        prog.load().map_err(prog_err(name))?;
    }
    Ok(prog)
}

/// `BPF_MAP_UPDATE_BATCH` (kernel ≥ 5.6 for hash maps): aya has no batch
/// operations, and one update per advert is most of a master's system calls.
fn update_batch<K: aya::Pod, V: aya::Pod>(fd: i32, keys: &[K], values: &[V]) -> io::Result<()> {
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let count = u32::try_from(keys.len().min(values.len()))
        .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: fd as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; the key
    // and value arrays hold `count` elements of the map's sizes and outlive
    // the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run<P>(prog: &P, frame: &[u8], repeat: u32) -> Result<(u32, Duration), ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::programs::TestRunResult>,
{
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    };
    let res = prog.test_run(opts)?;
    Ok((res.return_value, res.duration))
}

/// Pins a link just taken out of its program at `path(ifindex)`. On
/// failure (no BPF link support, a pin error) it says what that costs and
/// returns `Err`: the caller attaches again unpinned, and the datapath then
/// lives as long as the process, as without pins.
fn pin_taken_link(
    ifname: &str,
    link: Result<FdLink, aya::programs::links::LinkError>,
    path: impl FnOnce(u32) -> std::path::PathBuf,
) -> Result<PinnedLink, ()> {
    let pinned = match (ifindex_of(ifname), link) {
        (Some(ifindex), Ok(fd)) => {
            let path = path(ifindex);
            let _ = std::fs::remove_file(&path);
            fd.pin(&path).map_err(|e| e.to_string())
        }
        (None, _) => Err(format!("no interface {ifname}")),
        (_, Err(e)) => Err(e.to_string()),
    };
    pinned.map_err(|why| {
        tracing::warn!(
            interface = ifname,
            "datapath: cannot pin the link ({why}); if xvrrpd dies, this host keeps answering \
             for its VIPs until it starts again"
        );
    })
}

/// One run that keeps the frame as the program left it.
fn run_out<P>(prog: &P, frame: &[u8]) -> Result<(u32, Vec<u8>), ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::programs::TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    let res = prog.test_run(opts)?;
    out.truncate(res.data_size_out as usize);
    Ok((res.return_value, out))
}

/// A removal of a key that is not there is done (the kernel says ENOENT).
fn absent_ok(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(e) if is_absent(&e) => Ok(()),
        other => other,
    }
}

/// The key is not in the map.
fn is_absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn ifname_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname needs.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

fn ifindex_of(ifname: &str) -> Option<u32> {
    let c = std::ffi::CString::new(ifname).ok()?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The kernel → agent ring buffer.
pub struct EventRing {
    ring: RingBuf<aya::maps::MapData>,
    /// Claims read by [`EventRing::drain`], waiting for [`EventRing::take_claims`].
    claims: Vec<ClaimEvent>,
    /// Down timers the kernel ran out, waiting for [`EventRing::take_downs`].
    downs: Vec<DownEvent>,
}

impl EventRing {
    /// Appends every pending advert to `out` without blocking; claims are
    /// kept for [`EventRing::take_claims`]. Returns how many records of
    /// either kind were read. The two are told apart by length.
    pub fn drain(&mut self, out: &mut Vec<AdvertEvent>) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Ok(ev) = bytemuck::try_pod_read_unaligned::<AdvertEvent>(&item) {
                out.push(ev);
                n += 1;
            } else if let Ok(ev) = bytemuck::try_pod_read_unaligned::<ClaimEvent>(&item) {
                self.claims.push(ev);
                n += 1;
            } else if let Ok(ev) = bytemuck::try_pod_read_unaligned::<DownEvent>(&item) {
                self.downs.push(ev);
                n += 1;
            }
        }
        n
    }

    /// Moves the claims read so far to `out`.
    pub fn take_claims(&mut self, out: &mut Vec<ClaimEvent>) {
        out.append(&mut self.claims);
    }

    /// Moves the kernel's expired down timers read so far to `out`.
    pub fn take_downs(&mut self, out: &mut Vec<DownEvent>) {
        out.append(&mut self.downs);
    }

    /// The fd to poll for readability.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_fd().as_raw_fd()
    }
}

impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_attach_takes_tcx_where_the_kernel_has_it_and_xdp_before() {
        for d in [Some("veth"), Some("virtio_net"), Some("mlx5_core"), None] {
            assert_eq!(auto_order(d, true)[0], Some(AttachMode::Tc), "{d:?}");
        }
        assert_eq!(
            auto_order(Some("veth"), false)[0],
            Some(AttachMode::XdpGeneric)
        );
        assert_eq!(
            auto_order(Some("veth"), true)[1],
            Some(AttachMode::XdpGeneric)
        );
        for d in [Some("virtio_net"), Some("mlx5_core"), None] {
            assert_eq!(
                auto_order(d, false)[0],
                Some(AttachMode::XdpNative),
                "{d:?}"
            );
            assert_eq!(auto_order(d, true)[1], Some(AttachMode::XdpNative), "{d:?}");
        }
        for tcx in [true, false] {
            for d in [Some("veth"), None] {
                let mut all: Vec<_> = auto_order(d, tcx).into_iter().flatten().collect();
                all.sort_by_key(|m| *m as u8);
                all.dedup();
                assert_eq!(all.len(), 3, "every mode is tried: {d:?} {tcx}");
            }
        }
    }
}
