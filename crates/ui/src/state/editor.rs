//! The payload editor: opened on the focused packet, on a library entry or on
//! a message of a followed stream (issue 14)
//! (a TLS plaintext record's plaintext, for a record), edited as hex or as ASCII (see [`crate::editor::Editor`]), reset, closed.
//! Its state is `App::editor` (None when closed).

use super::{App, Effect, Level, Tab};
use crate::editor::Editor;

/// What happens in the payload editor.
#[derive(Debug, Clone)]
pub enum EditorMsg {
    /// Edit the focused packet's payload.
    Open,
    /// Edit the open library entry's payload (to resend it).
    OpenLibraryEntry,
    /// The hex text changed.
    Hex(String),
    /// The ASCII text changed.
    Ascii(String),
    /// Back to the payload it was opened with.
    Reset,
    Close,
    // -- conversations and follow (issue 14) --
    /// Edit these bytes (a message of a followed stream) as the payload of
    /// packet `packet_id` (the first packet they came from: its connection
    /// and, for a TLS plaintext record, its library go to the resend form).
    OpenBytes {
        packet_id: u64,
        bytes: Vec<u8>,
    },
}

pub(super) fn update(app: &mut App, msg: EditorMsg) -> Vec<Effect> {
    match msg {
        EditorMsg::Open => match app.packets.focused_packet() {
            Some(p) => {
                app.resend.form.follow(p);
                app.editor = Some(Editor::of(p.id, p));
            }
            None => app.notify(Level::Error, "Pick a packet in the list first."),
        },
        EditorMsg::OpenLibraryEntry => {
            if let Some(e) = &app.library.open {
                app.resend.form.follow(&e.packet);
                app.editor = Some(Editor::of(0, &e.packet));
                app.tab = Tab::Capture;
            }
        }
        EditorMsg::Hex(t) => {
            if let Some(e) = &mut app.editor {
                e.edit_hex(t)
            }
        }
        EditorMsg::Ascii(t) => {
            if let Some(e) = &mut app.editor {
                e.edit_ascii(t)
            }
        }
        EditorMsg::Reset => {
            if let Some(e) = &mut app.editor {
                e.reset()
            }
        }
        EditorMsg::Close => app.editor = None,
        // -- conversations and follow (issue 14) --
        EditorMsg::OpenBytes { packet_id, bytes } => match app.packets.packet(packet_id) {
            Some(p) => {
                app.resend.form.follow(p);
                app.editor = Some(Editor { record: p.tls, ..Editor::new(packet_id, &bytes) });
                app.tab = Tab::Capture;
            }
            None => app.notify(Level::Error, format!("Packet #{packet_id} is no longer held.")),
        },
    }
    Vec::new()
}
