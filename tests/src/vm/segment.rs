//! Two guests and a client on one L2 segment: a lab bridge with a tap per
//! guest and a client namespace, the guests booted together with the
//! package under test in their initrd.

use std::{fs, path::Path, thread, time::Duration};

use anyhow::{Result, bail};

use super::{
    image::{self, Kernel},
    qemu::{Accel, Vm, VmSpec},
};
use crate::lab::{Host, Lab};

/// A guest's place on the segment.
pub struct Node {
    pub name: &'static str,
    pub addr: &'static str,
    pub mac: &'static str,
}

pub const NODE_A: Node = Node {
    name: "vma",
    addr: "192.0.2.1",
    mac: "52:54:00:00:0a:01",
};
pub const NODE_B: Node = Node {
    name: "vmb",
    addr: "192.0.2.2",
    mac: "52:54:00:00:0a:02",
};
/// The client namespace on the bridge.
pub const CLIENT: &str = "192.0.2.100/24";

/// The booted segment; everything goes away when it is dropped.
pub struct Segment {
    pub a: Vm,
    pub b: Vm,
    pub client: Host,
    // Last: the guests die before their taps and namespaces.
    pub lab: Lab,
}

/// Boots [`NODE_A`] and [`NODE_B`] on `kernel` with `deb` at
/// /root/xvrrpd.deb, their consoles and sockets in `dir`.
pub fn boot(kernel: &Kernel, accel: Accel, deb: &Path, dir: &Path) -> Result<Segment> {
    let mut lab = Lab::new()?;
    lab.add_tap("tapa")?;
    lab.add_tap("tapb")?;
    let client = lab.add_host("client", &[CLIENT])?;
    let initrd = dir.join("initrd");
    image::initrd(kernel, &[("/root/xvrrpd.deb", deb)], &initrd)?;
    let spec = |node: &Node, tap: &str| VmSpec {
        name: node.name.into(),
        kernel: kernel.clone(),
        initrd: initrd.clone(),
        accel,
        tap: Some((lab.switch_ns().to_string(), tap.to_string())),
        mac: node.mac.into(),
        mem_mb: 1024,
        dir: dir.to_path_buf(),
    };
    let timeout = match accel {
        Accel::Kvm => Duration::from_secs(60),
        Accel::Tcg => Duration::from_secs(180),
    };
    let (sa, sb) = (spec(&NODE_A, "tapa"), spec(&NODE_B, "tapb"));
    let (ra, rb) = thread::scope(|s| {
        let ha = s.spawn(|| Vm::boot(&sa, timeout));
        let hb = s.spawn(|| Vm::boot(&sb, timeout));
        (ha.join(), hb.join())
    });
    let _ = fs::remove_file(&initrd);
    match (ra, rb) {
        (Ok(Ok(a)), Ok(Ok(b))) => Ok(Segment { a, b, client, lab }),
        (Ok(Err(e)), _) | (_, Ok(Err(e))) => Err(e),
        _ => bail!("a boot thread panicked"),
    }
}

/// Brings up the guest's address, installs the package and writes
/// /etc/keepalived/keepalived.conf (`systemd` drop-in lines, if any, go to
/// xvrrpd.service.d/vmtest.conf).
pub fn install(vm: &mut Vm, node: &Node, conf: &str, drop_in: &str) -> Result<()> {
    vm.ok(&format!(
        "set -e\nip link set eth0 up\nip addr add {}/24 dev eth0\n\
         dpkg -i /root/xvrrpd.deb >/run/dpkg.log 2>&1 || {{ cat /run/dpkg.log; exit 1; }}\n\
         mkdir -p /etc/keepalived /etc/systemd/system/xvrrpd.service.d\n\
         cat > /etc/keepalived/keepalived.conf <<'EOF'\n{conf}EOF\n\
         cat > /etc/systemd/system/xvrrpd.service.d/vmtest.conf <<'EOF'\n[Service]\n{drop_in}EOF\n\
         systemctl daemon-reload\n",
        node.addr
    ))?;
    Ok(())
}

/// Saves the guests' xvrrpd journals and kernel logs into `dir`.
pub fn save_logs(seg: &mut Segment, dir: &Path) {
    for vm in [&mut seg.a, &mut seg.b] {
        for (what, script) in [
            (
                "journal",
                "journalctl -u xvrrpd --no-pager -o short-monotonic",
            ),
            ("dmesg", "dmesg"),
        ] {
            if let Ok(r) = vm.sh(script, Duration::from_secs(30)) {
                let _ = fs::write(dir.join(format!("{}-{what}.log", vm.name)), r.out);
            }
        }
    }
}
