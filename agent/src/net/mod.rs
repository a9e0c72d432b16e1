//! Every side effect xvrrpd has on the host's network, as small typed APIs
//! the runtime calls:
//!
//! * [`addr`]: virtual IPs through rtnetlink, marked so a restart after
//!   `kill -9` finds and removes what a dead instance left behind;
//! * [`devconf`]: an interface's `promote_secondaries`;
//! * [`gratuitous`]: gratuitous ARP and unsolicited neighbour
//!   advertisements on a packet socket;
//! * [`link`]: link and address state from netlink notifications, and
//!   look-ups of interface names and advert source addresses;
//! * [`netns`]: entering the network namespace `net_namespace` names;
//! * [`route`]: routes and policy rules (`virtual_routes`, `virtual_rules`,
//!   `static_routes`, `static_rules`) through rtnetlink, marked with a
//!   routing protocol so a restart finds what a dead instance left;
//! * [`route_watch`]: deletions of those routes and rules, filtered in the
//!   kernel so a churning routing table does not wake the daemon.
//!
//! Everything async runs on tokio and works on a current-thread runtime
//! (with IO and time enabled). Sending adverts and gratuitous frames never
//! waits: sockets are non-blocking.
//!
//! How the runtime uses it, in outline:
//!
//! ```no_run
//! use std::net::IpAddr;
//! use xvrrpd::net::{
//!     addr::{Vip, VipManager},
//!     gratuitous::GratuitousSender,
//!     link::{self, LinkWatcher, NetEvent, Watch},
//! };
//! use xvrrpd::datapath::send::{AdvertDest, AdvertSender};
//! use xvrrpd::packet::{encode, Advert, V3Ipv4Checksum};
//!
//! async fn outline(advert: Advert, vips: Vec<Vip>) -> anyhow::Result<()> {
//!     let ifindex = link::ifindex_by_name("eth0")?;
//!     // Startup: drop what a killed instance left, keep what we hold now.
//!     let manager = VipManager::new()?;
//!     manager.remove_stale_marked(&[]).await?;
//!     // Advert source: the interface's primary IPv4 address.
//!     let addrs = link::interface_addrs(ifindex).await?;
//!     let src = link::primary_ipv4(&addrs).ok_or(anyhow::anyhow!("no IPv4 address"))?;
//!     let tx = AdvertSender::open(ifindex, IpAddr::V4(src), AdvertDest::vrrp_group(false))?;
//!     let garp = GratuitousSender::new(ifindex)?;
//!     // Becoming master: advert, VIPs in one batch, then GARP/NA.
//!     let msg = encode(&advert, tx.source(), tx.encode_destination(), V3Ipv4Checksum::default())?;
//!     tx.send(&msg)?;
//!     for r in manager.add_vips(&vips).await {
//!         r?;
//!     }
//!     let ips: Vec<IpAddr> = vips.iter().map(|v| v.addr).collect();
//!     garp.send_for(&ips).await?;
//!     // Link state, in the event loop's select!.
//!     let mut watch = LinkWatcher::new(Watch::LinksAndAddresses)?;
//!     while let Ok(ev) = watch.next().await {
//!         if let NetEvent::Link(l) = ev {
//!             println!("{} up={}", l.name, l.up);
//!         }
//!     }
//!     Ok(())
//! }
//! ```

pub mod addr;
pub mod devconf;
pub mod gratuitous;
pub mod link;
pub mod netns;
pub(crate) mod nl;
pub mod route;
pub mod route_watch;
pub mod vmac;

pub use nl::NlError;

use std::{io, os::fd::AsRawFd};

use tokio::io::unix::AsyncFd;

/// Registers a socket this module owns with tokio's reactor.
///
/// Errors instead of panicking when called outside a runtime.
pub(crate) fn async_fd<T: AsRawFd + OwnsFd>(inner: T) -> io::Result<AsyncFd<T>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "called outside a tokio runtime: create network objects from inside the runtime",
        ));
    }
    // SAFETY: `OwnsFd` types own their descriptor: it stays open, and
    // `as_raw_fd` returns the same one, until the value is dropped.
    unsafe { AsyncFd::register(inner) }.map_err(|e| e.into_parts().1)
}

/// Socket types that own one file descriptor for their whole life.
pub(crate) trait OwnsFd {}
impl OwnsFd for netlink_sys::Socket {}
impl OwnsFd for socket2::Socket {}
