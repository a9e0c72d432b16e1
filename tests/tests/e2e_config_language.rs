//! keepalived's config language at work: one `~SEQ` line over a multi-line
//! definition makes 50 instances, each with its own VRID and VIP, on two
//! routers that differ only by a definition. r1 is master of all 50, r2
//! backup of all 50, and r1 holds every VIP (`XVRRPD_LAB_DAEMON=keepalived`:
//! the same file under keepalived).

use std::{net::IpAddr, time::Duration};

use anyhow::{Result, ensure};
use xvrrpd_tests::{retry::lab_test, vrrp_lab::VrrpLab, vrrp_lab::scenario_daemon};

const N: u8 = 50;

fn config(prio: u8, fifo: &str) -> String {
    format!(
        "global_defs {{\n    vrrp_notify_fifo {fifo}\n    script_user root\n    enable_script_security\n}}\n\n\
         $PRIO={prio}\n\
         $SERVICE=\\\n\
         vrrp_instance SVC_${{N}} {{ \\\n\
             state BACKUP \\\n\
             interface eth0 \\\n\
             virtual_router_id ${{N}} \\\n\
             priority ${{PRIO}} \\\n\
             advert_int 0.1 \\\n\
             version 3 \\\n\
             virtual_ipaddress {{ \\\n\
                 10.20.0.${{N}}/24 \\\n\
             }} \\\n\
         }}\n\n\
         ~SEQ(N, 1, {N}) $SERVICE\n"
    )
}

#[test]
fn seq_generates_fifty_instances_that_run() -> Result<()> {
    lab_test("seq_generates_fifty_instances_that_run", || {
        let d = scenario_daemon();
        let mut lab = VrrpLab::new("seq50")?;
        let mut r1 = lab.add_router("r1", d, &["192.0.2.11/24"])?;
        let mut r2 = lab.add_router("r2", d, &["192.0.2.12/24"])?;
        for (r, prio) in [(&mut r1, 150), (&mut r2, 100)] {
            let text = config(prio, &r.fifo_path.display().to_string());
            r.write_config_text(&text)?;
        }
        r1.start()?;
        r2.start()?;
        for n in 1..=N {
            let name = format!("SVC_{n}");
            r1.wait_state(&name, "MASTER", Duration::from_secs(20))?;
            r2.wait_state(&name, "BACKUP", Duration::from_secs(5))?;
        }
        for n in 1..=N {
            let vip: IpAddr = format!("10.20.0.{n}").parse()?;
            ensure!(
                r1.wait_vip(vip, true, Duration::from_secs(5)),
                "r1 does not hold {vip}"
            );
            ensure!(!r2.has_vip(vip), "r2 holds {vip} too");
        }
        Ok(())
    })
}
