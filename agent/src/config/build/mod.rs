//! The keyword tree → the typed model, validated and defaulted as keepalived
//! does. Where keepalived reports a value and carries on with a default, the
//! report here is an error (the file does not run as written); where it only
//! warns, so does this.
//!
//! Each block kind reads its lines through a keyword table into a draft;
//! checks between keywords of a block run once the block is read
//! (`validate`), checks between blocks once the file is read (`resolve`).

mod global_defs;
mod instance_blocks;
mod keywords;
mod resolve;
mod routes;

pub(crate) use routes::{Iproute2Name, iproute2_number};
mod bfd_instance;
mod scripts;
mod track_file;
mod track_process;
mod track_refs;
mod tracking;
mod validate;
mod vrrp_instance;
mod vrrp_script;
mod vrrp_sync_group;

use keywords::{Shape, Table, unchecked};

use super::{
    Unsupported, UnsupportedKind, diag::Diags, host::Host, lexer::Token, model::Config, tree::Node,
};

pub(crate) struct Builder<'a> {
    host: &'a dyn Host,
    d: &'a mut Diags,
    unsupported: Vec<Unsupported>,
    cfg: Config,
    /// vrrp_garp_lower_prio_{delay,repeat} given: otherwise they follow the master values.
    lp_delay_set: bool,
    lp_repeat_set: bool,
    inst_meta: Vec<vrrp_instance::InstMeta>,
    group_meta: Vec<vrrp_sync_group::GroupMeta>,
    scripts: Vec<scripts::PendingScript>,
    /// The preference keepalived gives the next rule without one (IPv4, IPv6).
    next_rule_priority: (u32, u32),
}

/// Every keyword the reader knows, as (block, keyword): the block as
/// keepalived.conf names it (`top level` for keywords outside any block).
/// docs/migrating-from-keepalived.md's keyword table is checked against it.
pub fn keyword_catalog() -> Vec<(&'static str, &'static str)> {
    let blocks: [(&'static str, Vec<&'static str>); 9] = [
        ("top level", TOP.names().collect()),
        ("global_defs", global_defs::keyword_names()),
        ("vrrp_instance", vrrp_instance::keyword_names()),
        ("authentication", instance_blocks::keyword_names()),
        ("vrrp_sync_group", vrrp_sync_group::keyword_names()),
        ("vrrp_script", vrrp_script::keyword_names()),
        ("vrrp_track_file", track_file::keyword_names()),
        ("vrrp_track_process", track_process::keyword_names()),
        ("bfd_instance", bfd_instance::keyword_names()),
    ];
    blocks
        .into_iter()
        .flat_map(|(block, names)| names.into_iter().map(move |k| (block, k)))
        .collect()
}

impl<'a> Builder<'a> {
    pub(crate) fn new(host: &'a dyn Host, d: &'a mut Diags) -> Self {
        Self {
            host,
            d,
            unsupported: Vec::new(),
            cfg: Config::default(),
            lp_delay_set: false,
            lp_repeat_set: false,
            inst_meta: Vec::new(),
            group_meta: Vec::new(),
            scripts: Vec::new(),
            next_rule_priority: (routes::RULE_START_PRIORITY, routes::RULE_START_PRIORITY),
        }
    }

    pub(crate) fn run(mut self, top: &[Node]) -> (Config, Vec<Unsupported>) {
        self.read_block(&TOP, &mut (), top);
        self.resolve();
        (self.cfg, self.unsupported)
    }

    /// `KIND NAME {`: the name, if the block is well formed.
    fn block_name(&mut self, n: &Node) -> Option<Token> {
        if !self.shape(n, Shape::Block) {
            return None;
        }
        let name = self.arg(n, 0, "name")?.clone();
        self.extra(n, 1);
        Some(name)
    }

    /// A second `KIND NAME {` block of a kind whose names must be unique.
    fn defined_twice(&mut self, n: &Node, name: &Token) {
        let kind = n.name();
        self.d
            .error(
                &name.loc,
                format!("{kind} '{}' is defined twice", name.text),
            )
            .hint(format!("give each {kind} its own name"));
    }
}

static TOP: Table<()> = Table {
    context: "the top level",
    unknown_leaf: false,
    keywords: &[
        unchecked(&["global_defs"], |b, _, n| b.global_defs(n)),
        // Top-level in keepalived, not in global_defs: they act before
        // the configuration is read (which namespace, which files).
        unchecked(&["net_namespace"], |b, _, n| {
            b.cfg.global_defs.net_namespace = b.file_name_word(n, "namespace name");
        }),
        unchecked(&["instance"], |b, _, n| {
            b.cfg.global_defs.instance = b.file_name_word(n, "instance name");
        }),
        unchecked(
            &[
                "net_namespace_ipvs",
                "namespace_with_ipsets",
                "use_pid_dir",
                "child_wait_time",
                "linkbeat_use_polling",
            ],
            |b, _, n| b.ignored(n),
        ),
        unchecked(&["vrrp_script"], |b, _, n| b.vrrp_script(n)),
        unchecked(&["vrrp_track_file", "track_file"], |b, _, n| {
            b.track_file(n)
        }),
        unchecked(&["vrrp_track_process"], |b, _, n| b.track_process(n)),
        unchecked(&["bfd_instance"], |b, _, n| b.bfd_instance(n)),
        unchecked(&["vrrp_instance"], |b, _, n| b.vrrp_instance(n)),
        unchecked(&["vrrp_sync_group"], |b, _, n| b.vrrp_sync_group(n)),
        unchecked(
            &[
                "virtual_server",
                "virtual_server_group",
                "real_server",
                "SSL",
            ],
            |b, _, n| {
                b.unsupported(
                    n,
                    UnsupportedKind::Ignored,
                    "block not handled by xvrrpd (LVS/IPVS); the VRRP part still runs, as with keepalived --vrrp",
                )
            },
        ),
        // Top-level in keepalived, kept in global_defs: set whatever the
        // VRRP state. Several blocks add up, as in keepalived.
        unchecked(&["static_ipaddress"], |b, _, n| {
            let a = b.static_addresses(n);
            b.cfg.global_defs.static_ipaddress.extend(a);
        }),
        unchecked(&["static_routes"], |b, _, n| {
            let r = b.routes(n, routes::Owner::Static);
            b.cfg.global_defs.static_routes.extend(r);
        }),
        unchecked(&["static_rules"], |b, _, n| {
            let r = b.rules(n, routes::Owner::Static);
            b.cfg.global_defs.static_rules.extend(r);
        }),
        unchecked(
            &[
                "garp_group",
                "track_group",
                "linkbeat_interfaces",
                "interface_up_down_delays",
                "vrrp_track_bfd",
            ],
            |b, _, n| b.not_supported(n),
        ),
    ],
};
