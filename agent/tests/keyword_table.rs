//! docs/migrating-from-keepalived.md's keyword table stays in step with the
//! reader: every keyword the parser knows has one row, in its block, and
//! the row's status is what `xvrrpd check` does with it — nothing (supported,
//! or supported differently, which the row explains), a warning (not
//! supported: the file would not run as written) or a note (ignored: no
//! effect on VRRP). `XVRRPD_BLESS=1` rewrites the rows from the reader,
//! keeping each row's note and a "supported differently" status.

use std::collections::BTreeMap;

use xvrrpd::config::{FixedHost, UnsupportedKind, analyze_source, keyword_catalog};

const DOC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/migrating-from-keepalived.md"
);
const START: &str = "<!-- keyword-table:start -->";
const END: &str = "<!-- keyword-table:end -->";

const SUPPORTED: &str = "supported";
const DIFFERENTLY: &str = "supported differently";
const NOT_SUPPORTED: &str = "not supported (warning)";
const IGNORED: &str = "ignored (note)";

fn host() -> FixedHost {
    FixedHost {
        interfaces: ["eth0".to_string()].into(),
        users: ["root".to_string()].into(),
        groups: ["root".to_string()].into(),
        scripts: ["/bin/true".to_string()].into(),
        config_id: None,
    }
}

const INSTANCE: &str = "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n@@\n virtual_ipaddress {\n  10.0.0.1/24\n }\n}\n";

/// A configuration with `line` in `block`.
fn place(block: &str, line: &str) -> String {
    let inst = |extra: &str| INSTANCE.replace("@@", extra);
    match block {
        "top level" => format!("{line}\n{}", inst("")),
        "global_defs" => format!("global_defs {{\n{line}\n}}\n{}", inst("")),
        "vrrp_instance" => inst(line),
        "authentication" => inst(&format!(" authentication {{\n{line}\n }}")),
        "vrrp_sync_group" => format!(
            "{}vrrp_sync_group G {{\n group {{\n  V\n }}\n{line}\n}}\n",
            inst("")
        ),
        "vrrp_script" => format!(
            "vrrp_script S {{\n script /bin/true\n{line}\n}}\n{}",
            inst("")
        ),
        "vrrp_track_file" => format!(
            "vrrp_track_file F {{\n file /tmp/xvrrpd-keyword-table\n{line}\n}}\n{}",
            inst("")
        ),
        "vrrp_track_process" => format!(
            "vrrp_track_process P {{\n process xvrrpd-keyword-table\n{line}\n}}\n{}",
            inst("")
        ),
        "bfd_instance" => format!(
            "bfd_instance B {{\n neighbor_ip 192.0.2.1\n{line}\n}}\n{}",
            inst("")
        ),
        other => panic!("no template for block {other}"),
    }
}

/// What `xvrrpd check` does with `keyword` in `block`: it is reported as
/// unsupported (a warning or a note) in either shape, or it is not.
fn classify(block: &str, keyword: &str) -> &'static str {
    // Block keywords that hold the others are supported by definition.
    if block == "top level"
        && [
            "global_defs",
            "vrrp_instance",
            "vrrp_sync_group",
            "vrrp_script",
            "vrrp_track_file",
            "track_file",
            "vrrp_track_process",
            "bfd_instance",
        ]
        .contains(&keyword)
    {
        return SUPPORTED;
    }
    for line in [format!(" {keyword} 1"), format!(" {keyword} {{\n 1\n }}")] {
        let r = analyze_source(place(block, &line).as_bytes(), "k.conf", &host());
        if let Some(u) = r.unsupported.iter().find(|u| u.keyword == keyword) {
            return match u.kind {
                UnsupportedKind::NotSupported => NOT_SUPPORTED,
                UnsupportedKind::Ignored => IGNORED,
            };
        }
    }
    SUPPORTED
}

/// The rows between the markers: (block, keyword) → (status, note).
fn documented(doc: &str) -> BTreeMap<(String, String), (String, String)> {
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        panic!("{DOC} has no keyword table between {START} and {END}");
    };
    doc[a..b]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert!(cells.len() == 4, "a keyword row has 4 cells: {l}");
            (
                (cells[1].to_string(), cells[0].trim_matches('`').to_string()),
                (cells[2].to_string(), cells[3].to_string()),
            )
        })
        .collect()
}

fn table(rows: &BTreeMap<(String, String), (String, String)>, order: &[(&str, &str)]) -> String {
    let mut out = String::from("| keyword | block | status | note |\n|---|---|---|---|\n");
    for (block, keyword) in order {
        let (status, note) = &rows[&(block.to_string(), keyword.to_string())];
        out.push_str(&format!("| `{keyword}` | {block} | {status} | {note} |\n"));
    }
    out
}

#[test]
fn the_keyword_table_matches_the_reader() {
    let doc = std::fs::read_to_string(DOC).expect("reading the migration guide");
    let have = documented(&doc);
    let catalog = keyword_catalog();
    let mut want = BTreeMap::new();
    let mut problems = Vec::new();
    for (block, keyword) in &catalog {
        let status = classify(block, keyword);
        let key = (block.to_string(), keyword.to_string());
        let (doc_status, note) = have
            .get(&key)
            .cloned()
            .unwrap_or_else(|| (String::new(), String::new()));
        let ok = doc_status == status || (status == SUPPORTED && doc_status == DIFFERENTLY);
        if !ok {
            problems.push(format!(
                "`{keyword}` in {block}: the table says {:?}, `xvrrpd check` makes it {status}",
                doc_status
            ));
        }
        if doc_status == DIFFERENTLY && note.is_empty() {
            problems.push(format!("`{keyword}` in {block}: say how it differs"));
        }
        let kept = if ok { doc_status } else { status.to_string() };
        want.insert(key, (kept, note));
    }
    for (block, keyword) in have.keys() {
        if !catalog.iter().any(|(b, k)| b == block && k == keyword) {
            problems.push(format!(
                "`{keyword}` in {block} is in the table but not a keyword the reader knows"
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    let rows = table(&want, &catalog);
    if std::env::var_os("XVRRPD_BLESS").is_some() {
        let (a, b) = (doc.find(START).unwrap_or(0), doc.find(END).unwrap_or(0));
        let new = format!("{}{START}\n{rows}{}", &doc[..a], &doc[b..]);
        std::fs::write(DOC, new).expect("writing the migration guide");
        return;
    }
    panic!(
        "docs/migrating-from-keepalived.md's keyword table is out of step with the reader \
         (XVRRPD_BLESS=1 rewrites it, keeping notes):\n  {}",
        problems.join("\n  ")
    );
}
