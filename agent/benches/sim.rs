//! 1,000 virtual routers (500 segments of a master and a backup) sending
//! VRRPv3 adverts every 10 ms for 60 simulated seconds on one core. Prints
//! one line: events handled and events per wall-clock second.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use xvrrpd::packet::Version;
use xvrrpd::sim::{LinkParams, Sim};
use xvrrpd::vrrp::{NS_PER_S, RouterConfig};

const ROUTERS: usize = 1000;
const SIMULATED_S: u64 = 60;

fn main() {
    let mut sim = Sim::new(1);
    sim.set_monitor(false);
    let link = LinkParams {
        delay_ns: 50_000,
        jitter_ns: 20_000,
        loss: 0.0,
        dup: 0.0,
    };
    for i in 0..ROUTERS {
        let segment = (i / 2) as u32;
        let host = (i % 2) as u8;
        let primary = IpAddr::V4(Ipv4Addr::new(
            10,
            (segment >> 8) as u8,
            segment as u8,
            10 + host,
        ));
        let vip = IpAddr::V4(Ipv4Addr::new(10, (segment >> 8) as u8, segment as u8, 100));
        let mut cfg = RouterConfig::new(
            format!("vi{segment}"),
            (segment % 255 + 1) as u8,
            Version::V3,
            if host == 0 { 200 } else { 100 },
            primary,
            vec![vip],
        );
        cfg.advert_int_cs = 1;
        if let Err(e) = sim.add_router(cfg, segment, link) {
            eprintln!("bad router config: {e}");
            std::process::exit(1);
        }
    }
    let start = Instant::now();
    for i in 0..ROUTERS {
        sim.start(i);
    }
    sim.run_until(SIMULATED_S * NS_PER_S);
    let wall = start.elapsed().as_secs_f64();
    let events = sim.events();
    println!(
        "sim: routers={ROUTERS} simulated_s={SIMULATED_S} events={events} events_per_s={:.0} wall_s={wall:.3}",
        events as f64 / wall
    );
}
