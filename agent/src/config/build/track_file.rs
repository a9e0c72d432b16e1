//! `vrrp_track_file NAME { ... }`: a file whose number adjusts priority.

use super::{
    super::{model::TrackFile, tree::Node},
    Builder,
    keywords::{Table, leaf},
};

impl Builder<'_> {
    pub(super) fn track_file(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut f = TrackFile {
            name: name.text,
            file: String::new(),
            weight: 1,
            weight_reverse: false,
            init_file: None,
        };
        self.read_block(&TRACK_FILE, &mut f, n.children());
        if f.file.is_empty() {
            self.d
                .error(&n.key.loc, format!("no file set for track file {}", f.name))
                .hint("add: file \"/path/to/file\"");
            return;
        }
        self.cfg.vrrp_track_file.push(f);
    }
}

/// `init_file [VALUE] [overwrite]`, in any order.
fn init_file(b: &mut Builder<'_>, f: &mut TrackFile, n: &Node) {
    let mut value = 0;
    let mut overwrite = false;
    for a in &n.args {
        if a.text == "overwrite" {
            overwrite = true;
        } else if let Ok(v) = a.text.parse::<i64>() {
            value = v;
        } else {
            b.d.error(&a.loc, format!("init_file: unknown option '{}'", a.text))
                .hint("write: init_file [VALUE] [overwrite]");
        }
    }
    f.init_file = Some((value, overwrite));
}

static TRACK_FILE: Table<TrackFile> = Table {
    context: "vrrp_track_file",
    unknown_leaf: true,
    keywords: &[
        leaf(&["file"], |b, f, n| {
            if let Some(t) = b.word(n, "path") {
                f.file = t.text;
            }
        }),
        leaf(&["weight"], |b, f, n| {
            let range = i64::from(i32::MAX);
            let fields = (&mut f.weight, &mut f.weight_reverse);
            b.set_weight_reverse(n, "track_file weight", range, fields)
        }),
        leaf(&["init_file"], init_file),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    TRACK_FILE.names().collect()
}
