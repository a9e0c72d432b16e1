//! Link state from netlink: the initial dump, link down/up and carrier loss
//! of a veth, address changes, link removal, and the source look-ups.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd::net::{
    addr::{Vip, VipManager},
    link::{
        LinkWatcher, NetEvent, Watch, driver, ifindex_by_name, ifname_by_index, interface_addrs,
        ipv6_link_local, link_state, primary_ipv4,
    },
};
use xvrrpd_tests::{Host, Lab};

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A watcher running in `host`'s namespace on its own thread; events come
/// out of the channel. It stops when the stop sender is dropped or after
/// 60 s.
struct Watching {
    events: mpsc::Receiver<NetEvent>,
    _stop: tokio::sync::oneshot::Sender<()>,
    seen: Vec<NetEvent>,
}

impl Watching {
    fn start(host: &Host) -> Self {
        let (tx, events) = mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let _thread = host.spawn_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            rt.block_on(async move {
                let mut w = LinkWatcher::new(Watch::LinksAndAddresses)?;
                let end = tokio::time::sleep(Duration::from_secs(60));
                tokio::pin!(end);
                loop {
                    tokio::select! {
                        ev = w.next() => {
                            if tx.send(ev?).is_err() {
                                return Ok(());
                            }
                        }
                        _ = &mut stopped => return Ok(()),
                        _ = &mut end => return Ok(()),
                    }
                }
            })
        });
        Watching {
            events,
            _stop: stop,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `want`; the error lists what came.
    fn wait(&mut self, what: &str, want: impl Fn(&NetEvent) -> bool) -> Result<NetEvent> {
        let end = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => {
                    self.seen.push(ev.clone());
                    if want(&ev) {
                        return Ok(ev);
                    }
                }
                Err(_) => bail!(
                    "no event `{what}` within {STEP_TIMEOUT:?}; events so far:\n{:#?}",
                    self.seen
                ),
            }
        }
    }
}

fn is_link(ev: &NetEvent, ifindex: u32, up: bool) -> bool {
    matches!(ev, NetEvent::Link(l) if l.ifindex == ifindex && l.up == up)
}

#[test]
fn veth_down_up_and_carrier_loss_produce_link_events() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    let port = lab.switch_port(&a).context("host has a switch port")?;
    let mut w = Watching::start(&a);

    // The initial dump: eth0 is up, with its MAC, then the state is complete.
    let ev = w.wait("eth0 up in the dump", |e| is_link(e, ifindex, true))?;
    let NetEvent::Link(l) = ev else {
        unreachable!()
    };
    ensure!(l.name == "eth0" && l.admin_up && l.carrier, "{l:?}");
    ensure!(l.mac == Some([2, 0, 0, 0, 0, 1]), "MAC {:?}", l.mac);
    w.wait("Synced", |e| *e == NetEvent::Synced)?;
    let own = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    ensure!(
        w.seen
            .iter()
            .any(|e| matches!(e, NetEvent::Addr(x) if x.addr == own)),
        "the dump did not report 192.0.2.11: {:#?}",
        w.seen
    );

    // Administratively down, then up.
    a.exec(&["ip", "link", "set", "eth0", "down"])?;
    let ev = w.wait("eth0 down", |e| is_link(e, ifindex, false))?;
    ensure!(matches!(&ev, NetEvent::Link(l) if !l.admin_up), "{ev:?}");
    a.exec(&["ip", "link", "set", "eth0", "up"])?;
    w.wait("eth0 up again", |e| is_link(e, ifindex, true))?;

    // Carrier loss: the far end of the veth goes down.
    lab.switch_cmd(&["ip", "link", "set", &port, "down"])
        .status()
        .context("setting the switch port down")?;
    let ev = w.wait("eth0 without carrier", |e| is_link(e, ifindex, false))?;
    ensure!(
        matches!(&ev, NetEvent::Link(l) if l.admin_up && !l.carrier),
        "carrier loss should keep admin up: {ev:?}"
    );
    lab.switch_cmd(&["ip", "link", "set", &port, "up"])
        .status()
        .context("setting the switch port up")?;
    w.wait("eth0 carrier back", |e| is_link(e, ifindex, true))?;

    // Addresses come and go.
    a.exec(&["ip", "addr", "add", "192.0.2.99/24", "dev", "eth0"])?;
    let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    w.wait(
        "192.0.2.99 added",
        |e| matches!(e, NetEvent::Addr(x) if x.addr == vip && x.is_secondary()),
    )?;
    a.exec(&["ip", "addr", "del", "192.0.2.99/24", "dev", "eth0"])?;
    w.wait(
        "192.0.2.99 removed",
        |e| matches!(e, NetEvent::AddrRemoved(x) if x.addr == vip),
    )?;

    // A link that is created and deleted.
    a.exec(&[
        "ip", "link", "add", "tmp0", "type", "veth", "peer", "name", "tmp1",
    ])?;
    let ev = w.wait(
        "tmp0 appears",
        |e| matches!(e, NetEvent::Link(l) if l.name == "tmp0"),
    )?;
    let NetEvent::Link(tmp) = ev else {
        unreachable!()
    };
    a.exec(&["ip", "link", "del", "tmp0"])?;
    w.wait(
        "tmp0 removed",
        |e| matches!(e, NetEvent::LinkRemoved { ifindex, .. } if *ifindex == tmp.ifindex),
    )?;
    Ok(())
}

#[test]
fn lookups_find_names_and_advert_sources() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    let (by_name, by_index, missing, state, addrs, drivers) =
        a.block_on_in(move || async move {
            // A VIP on a subnet of its own is an IPv4 primary too: it must not
            // become the advert source.
            let m = VipManager::new()?;
            m.add_vip(&Vip::host(ifindex, "198.51.100.1".parse()?))
                .await?;
            Ok((
                ifindex_by_name("eth0")?,
                ifname_by_index(ifindex)?,
                ifindex_by_name("nosuch0").err(),
                link_state(ifindex).await?,
                interface_addrs(ifindex).await?,
                (driver("eth0"), driver("nosuch0")),
            ))
        })?;
    ensure!(
        drivers == (Some("veth".to_string()), None),
        "drivers of eth0 and a missing interface: {drivers:?}"
    );
    ensure!(by_name == ifindex && by_index == "eth0");
    let missing = missing.context("a missing interface was found")?;
    ensure!(missing.to_string().contains("nosuch0"), "{missing}");
    ensure!(
        state.up && state.mac == Some([2, 0, 0, 0, 0, 1]),
        "{state:?}"
    );
    ensure!(
        primary_ipv4(&addrs) == Some(Ipv4Addr::new(192, 0, 2, 11)),
        "primary {:?} from {addrs:#?}",
        primary_ipv4(&addrs)
    );
    // EUI-64 of 02:00:00:00:00:01; DAD is off in the lab, so it is usable.
    let ll: Ipv6Addr = "fe80::ff:fe00:1".parse()?;
    ensure!(
        ipv6_link_local(&addrs) == Some(ll),
        "link-local from {addrs:#?}"
    );
    Ok(())
}

#[test]
fn an_overrun_is_repaired_by_a_new_dump() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24"])?;
    let ifindex = a.ifindex()?;
    let (overruns, marked) = a.block_on_in(move || async move {
        // The smallest buffer the kernel allows: 200 notifications cannot fit.
        let mut w = LinkWatcher::with_receive_buffer(Watch::LinksAndAddresses, 0)?;
        while w.next().await? != NetEvent::Synced {}
        let m = VipManager::new()?;
        let vips: Vec<Vip> = (1..=200u8)
            .map(|i| Vip::host(ifindex, IpAddr::V4(Ipv4Addr::new(198, 51, 100, i))))
            .collect();
        for r in m.add_vips(&vips).await {
            r?;
        }
        // Read until the state holds all 200; bounded by the outer timeout.
        loop {
            w.next().await?;
            let n = w.addrs(ifindex).iter().filter(|x| x.is_marked()).count();
            if n == 200 {
                return Ok((w.overruns(), n));
            }
        }
    })?;
    ensure!(marked == 200);
    ensure!(overruns > 0, "the test did not provoke an overrun");
    Ok(())
}
