//! The packet library: saving the selected packets (as the editor shows
//! them), searching and tag chips, editing an entry's name, description and
//! tags, deleting, `.dpp` export and import, and the files ready to download.
//!
//! Search as you type: an incomplete last term (`tag:`, `name:`, `hex:`) is
//! not sent until something follows it, and a query the library refuses is
//! shown under the box only once Enter is pressed ([`LibraryMsg::Submit`]).
//! Export: "Export all" is the whole library, "Export shown" the search's
//! result, "Export N checked" the ticked entries.

use super::{App, Effect, Level};
use pidcap_library::{SavedPacket, TagCount};
use pidcap_packet::CapturedPacket;
use std::collections::BTreeSet;

/// Downloads listed at once (the newest first).
pub const MAX_DOWNLOADS: usize = 5;

/// What to save in the library.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaveForm {
    pub name: String,
    pub description: String,
    /// Comma-separated.
    pub tags: String,
}

/// A library entry being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibEdit {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub tags: String,
    /// The tags it had when opened (to compute what to add/remove).
    pub old_tags: Vec<String>,
    pub packet: Box<CapturedPacket>,
}

/// A file ready to download (`/download/KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Library {
    /// The search box.
    pub query: String,
    /// The tag chip picked.
    pub tag: Option<String>,
    /// The entries the query finds.
    pub items: Vec<SavedPacket>,
    pub tags: Vec<TagCount>,
    /// Ticked for export or deletion.
    pub checked: BTreeSet<i64>,
    pub open: Option<LibEdit>,
    pub save: SaveForm,
    pub downloads: Vec<Download>,
    /// The search text `items` answer (None until the first answer).
    pub listed: Option<String>,
    // -- library (issue 14) --
    /// Entries in the whole library (as of the last answer).
    pub total: u64,
    /// Why the library refused the search text (shown once Enter is pressed).
    pub search_error: Option<String>,
    /// Enter was pressed since the search box last changed.
    pub submitted: bool,
}

/// What happens to the library.
#[derive(Debug, Clone)]
pub enum LibraryMsg {
    SetSaveName(String),
    SetSaveDescription(String),
    SetSaveTags(String),
    /// Save the selected packets (the edited payload, when the editor has one).
    SaveSelected,
    /// That many packets were saved.
    Saved(usize),
    /// The search box changed.
    SetQuery(String),
    /// A tag chip was clicked (again: unpicked).
    SetTag(Option<String>),
    /// The answer to the search for `query`.
    Loaded {
        query: String,
        items: Vec<SavedPacket>,
        tags: Vec<TagCount>,
        /// Entries in the whole library.
        total: u64,
    },
    ToggleChecked(i64),
    /// Open an entry for editing.
    Open(i64),
    SetEditName(String),
    SetEditDescription(String),
    SetEditTags(String),
    SaveEdit,
    Close,
    Delete(Vec<i64>),
    /// Export the ticked entries to `.dpp`; none ticked: the whole library.
    ExportDpp,
    // -- library (issue 14) --
    /// Export the entries the search shows to `.dpp`.
    ExportShown,
    /// Enter in the search box: search for the text as typed, and show why not.
    Submit,
    /// A file is ready to download.
    DownloadReady(Download),
    /// A file was imported (by the upload route): refresh, say so.
    Imported(String),
}

pub fn split_tags(s: &str) -> Vec<String> {
    s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

/// The search text without an incomplete last term (`tag:`, `name:`,
/// `hex:`: a column prefix with nothing after it yet), as sent while typing.
pub fn typed_so_far(query: &str) -> String {
    let q = query.trim();
    match q.rsplit_once(char::is_whitespace) {
        Some((before, last)) if incomplete(last) => before.trim_end().to_string(),
        None if incomplete(q) => String::new(),
        _ => q.to_string(),
    }
}

fn incomplete(term: &str) -> bool {
    term.ends_with(':') || term == "0x" || term == "*"
}

/// Is this failure the library refusing the search text (not the library failing)?
pub fn is_query_error(e: &crate::error::Problem) -> bool {
    matches!(e, crate::error::Problem::Library(l) if matches!(**l, pidcap_library::LibraryError::Invalid(_)))
}

impl Library {
    /// The query the search box (as typed so far) and the tag chip describe.
    pub(super) fn query(&self) -> Effect {
        Effect::LibraryQuery { query: typed_so_far(&self.query), tag: self.tag.clone() }
    }

    /// The search error to show (only after Enter).
    pub fn shown_error(&self) -> Option<&str> {
        self.search_error.as_deref().filter(|_| self.submitted)
    }
}

pub(super) fn update(app: &mut App, msg: LibraryMsg) -> Vec<Effect> {
    let mut fx = Vec::new();
    let lib = &mut app.library;
    match msg {
        LibraryMsg::SetSaveName(s) => lib.save.name = s,
        LibraryMsg::SetSaveDescription(s) => lib.save.description = s,
        LibraryMsg::SetSaveTags(s) => lib.save.tags = s,
        LibraryMsg::SaveSelected => {
            let mut packets = app.packets.selection();
            if let (Some(e), [one]) = (&app.editor, packets.as_mut_slice()) {
                // Save what the editor shows: the edited payload replaces the captured one.
                if e.is_valid() && e.is_modified() && e.packet_id == one.id {
                    let off = (one.decoded.payload_offset as usize).min(one.data.len());
                    one.data.truncate(off);
                    one.data.extend_from_slice(&e.payload);
                    one.orig_len = one.data.len() as u32;
                }
            }
            if packets.is_empty() {
                app.notify_while(Level::Error, "Select the packets to save first.", super::While::NoPacketSelected);
            } else if app.library.save.name.trim().is_empty() {
                app.notify(Level::Error, "Give the saved packet a name.");
            } else {
                let s = &app.library.save;
                fx.push(Effect::LibrarySave {
                    packets,
                    name: s.name.trim().to_string(),
                    description: s.description.clone(),
                    tags: split_tags(&s.tags),
                });
            }
        }
        LibraryMsg::Saved(n) => {
            lib.save = SaveForm::default();
            fx.push(lib.query());
            app.notify(Level::Info, format!("Saved {n} packet{} in the library.", if n == 1 { "" } else { "s" }));
        }
        LibraryMsg::SetQuery(q) => {
            lib.query = q;
            lib.submitted = false;
            fx.push(lib.query());
        }
        LibraryMsg::Submit => {
            lib.submitted = true;
            fx.push(Effect::LibraryQuery { query: lib.query.trim().to_string(), tag: lib.tag.clone() });
        }
        LibraryMsg::SetTag(t) => {
            lib.tag = if lib.tag == t { None } else { t };
            fx.push(lib.query());
        }
        LibraryMsg::Loaded { query, items, tags, total } => {
            let ids: BTreeSet<i64> = items.iter().map(|i| i.id).collect();
            lib.checked.retain(|id| ids.contains(id));
            lib.items = items;
            lib.tags = tags;
            lib.listed = Some(query);
            lib.total = total;
            lib.search_error = None;
        }
        LibraryMsg::ToggleChecked(id) => {
            if !lib.checked.remove(&id) {
                lib.checked.insert(id);
            }
        }
        LibraryMsg::Open(id) => {
            if let Some(p) = lib.items.iter().find(|p| p.id == id) {
                lib.open = Some(LibEdit {
                    id,
                    name: p.name.clone(),
                    description: p.description.clone(),
                    tags: p.tags.join(", "),
                    old_tags: p.tags.clone(),
                    packet: Box::new(p.packet.clone()),
                });
            }
        }
        LibraryMsg::SetEditName(s) => {
            if let Some(e) = &mut lib.open {
                e.name = s
            }
        }
        LibraryMsg::SetEditDescription(s) => {
            if let Some(e) = &mut lib.open {
                e.description = s
            }
        }
        LibraryMsg::SetEditTags(s) => {
            if let Some(e) = &mut lib.open {
                e.tags = s
            }
        }
        LibraryMsg::SaveEdit => {
            if let Some(e) = lib.open.take() {
                let new = split_tags(&e.tags);
                let lower = |v: &[String]| v.iter().map(|t| t.to_lowercase()).collect::<BTreeSet<_>>();
                let (old_l, new_l) = (lower(&e.old_tags), lower(&new));
                fx.push(Effect::LibraryEdit {
                    id: e.id,
                    add_tags: new.iter().filter(|t| !old_l.contains(&t.to_lowercase())).cloned().collect(),
                    remove_tags: e.old_tags.iter().filter(|t| !new_l.contains(&t.to_lowercase())).cloned().collect(),
                    name: e.name,
                    description: e.description,
                });
                fx.push(lib.query());
            }
        }
        LibraryMsg::Close => lib.open = None,
        LibraryMsg::Delete(ids) => {
            if lib.open.as_ref().is_some_and(|e| ids.contains(&e.id)) {
                lib.open = None;
            }
            fx.push(Effect::LibraryDelete(ids));
            fx.push(lib.query());
        }
        LibraryMsg::ExportDpp => {
            if !lib.checked.is_empty() {
                fx.push(Effect::LibraryExportDpp(lib.checked.iter().copied().collect()));
            } else if lib.total == 0 {
                app.notify(Level::Error, "The library has nothing to export.");
            } else {
                fx.push(Effect::LibraryExportAll);
            }
        }
        LibraryMsg::ExportShown => {
            let ids: Vec<i64> = lib.items.iter().map(|i| i.id).collect();
            if ids.is_empty() {
                app.notify(Level::Error, "The search shows nothing to export.");
            } else {
                fx.push(Effect::LibraryExportDpp(ids));
            }
        }
        LibraryMsg::DownloadReady(d) => {
            let text = format!("{} is ready to download.", d.name);
            lib.downloads.insert(0, d);
            lib.downloads.truncate(MAX_DOWNLOADS);
            app.notify(Level::Info, text);
        }
        LibraryMsg::Imported(text) => {
            fx.push(lib.query());
            app.notify(Level::Info, text);
        }
    }
    fx
}
