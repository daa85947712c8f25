//! Conversations and Follow stream (issue 14): the connections of the
//! captured processes, counted as packets arrive
//! ([`pidcap_packet::stream::ConversationTable`], fed one packet at a time by
//! `observe` before the packet list takes them: nothing is recomputed from
//! all packets), sorted by a column; choosing one sets the packet list's
//! display filter to it (through `PacketsMsg::SetFilter`, with
//! `filter_text`); following one shows its payload put back together
//! ([`pidcap_packet::stream::follow`]) from the packets the list holds, as
//! ASCII, hex or both, its TLS plaintext records instead of the wire bytes
//! when it has some, and sends one message to the payload editor.
//!
//! The followed stream is rebuilt when packets of its conversation arrive:
//! at once while the conversation is small ([`LIVE_FOLLOW_PACKETS`]), else at
//! the next tick (once a second), so a bulk transfer does not rebuild it per
//! batch. A new capture or a cleared buffer empties the table.

use super::{App, AppMsg, CaptureMsg, EditorMsg, Effect, Level, Msg, PacketsMsg, Tab};
use pidcap_packet::stream::{follow, Conversation, ConversationKey, ConversationTable, FollowStream, Stream};
use pidcap_packet::Protocol;
use std::cmp::Ordering;

/// A followed conversation of at most this many packets is rebuilt as its
/// packets arrive; a bigger one once a second.
pub const LIVE_FOLLOW_PACKETS: usize = 2_000;

/// The columns of the conversation list (each sorts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Column {
    Protocol,
    Client,
    Server,
    Process,
    /// Packets and bytes the client sent.
    ClientPackets,
    ClientBytes,
    /// Packets and bytes the server sent.
    ServerPackets,
    ServerBytes,
    #[default]
    Start,
    Duration,
    State,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Protocol,
        Column::Client,
        Column::Server,
        Column::Process,
        Column::ClientPackets,
        Column::ClientBytes,
        Column::ServerPackets,
        Column::ServerBytes,
        Column::Start,
        Column::Duration,
        Column::State,
    ];

    /// The column's heading.
    pub fn label(self) -> &'static str {
        match self {
            Column::Protocol => "proto",
            Column::Client => "client",
            Column::Server => "server",
            Column::Process => "process",
            Column::ClientPackets => "pkts →",
            Column::ClientBytes => "bytes →",
            Column::ServerPackets => "pkts ←",
            Column::ServerBytes => "bytes ←",
            Column::Start => "start",
            Column::Duration => "duration",
            Column::State => "state",
        }
    }

    /// A name for element ids and tests (`client-bytes`).
    pub fn name(self) -> &'static str {
        match self {
            Column::Protocol => "protocol",
            Column::Client => "client",
            Column::Server => "server",
            Column::Process => "process",
            Column::ClientPackets => "client-packets",
            Column::ClientBytes => "client-bytes",
            Column::ServerPackets => "server-packets",
            Column::ServerBytes => "server-bytes",
            Column::Start => "start",
            Column::Duration => "duration",
            Column::State => "state",
        }
    }

    fn compare(self, x: &Conversation, y: &Conversation) -> Ordering {
        let (xc, xs) = x.flows(Stream::Wire);
        let (yc, ys) = y.flows(Stream::Wire);
        match self {
            Column::Protocol => x.key.protocol.number().cmp(&y.key.protocol.number()),
            Column::Client => x.client.cmp(&y.client),
            Column::Server => x.server().cmp(&y.server()),
            Column::Process => process_label(x).cmp(&process_label(y)),
            Column::ClientPackets => xc.packets.cmp(&yc.packets),
            Column::ClientBytes => xc.bytes.cmp(&yc.bytes),
            Column::ServerPackets => xs.packets.cmp(&ys.packets),
            Column::ServerBytes => xs.bytes.cmp(&ys.bytes),
            Column::Start => x.first_ns.cmp(&y.first_ns),
            Column::Duration => x.duration_ns().cmp(&y.duration_ns()),
            Column::State => x.state().cmp(&y.state()),
        }
    }
}

/// `pid/comm` of the first process seen on a conversation, `+N` for the others.
pub fn process_label(c: &Conversation) -> String {
    match c.processes.split_first() {
        None => String::new(),
        Some(((pid, comm), [])) => format!("{pid}/{comm}"),
        Some(((pid, comm), rest)) => format!("{pid}/{comm} +{}", rest.len()),
    }
}

/// How the followed bytes are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text: printable bytes and line ends as they are, the rest as `.`.
    #[default]
    Ascii,
    /// Offsets and hex bytes.
    Hex,
    /// Offsets, hex bytes and ASCII side by side.
    Both,
}

/// The conversation followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub key: ConversationKey,
    /// The wire bytes or its TLS plaintext records.
    pub stream: Stream,
    pub format: Format,
    /// Its bytes, as last rebuilt.
    pub view: FollowStream,
    /// Packets of it the list no longer holds (evicted): not in `view`.
    pub not_held: usize,
    /// Packets arrived since `view` was built (rebuilt at the next tick).
    pub stale: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Conversations {
    pub table: ConversationTable,
    pub sort: Column,
    pub descending: bool,
    /// The conversation the packet list was last filtered to (and the filter text).
    pub chosen: Option<(ConversationKey, String)>,
    pub follow: Option<Follow>,
}

/// What happens to the conversation list and the followed stream.
#[derive(Debug, Clone)]
pub enum ConversationsMsg {
    /// Sort by a column; the same column again reverses the order.
    SortBy(Column),
    /// Filter the packet list to this conversation and show it.
    Choose(ConversationKey),
    /// The conversation of the packet shown in the detail: filter the list to it.
    ChooseFocused,
    /// Follow this conversation's stream (on the Conversations tab).
    Follow(ConversationKey),
    /// Follow the conversation of the packet shown in the detail.
    FollowFocused,
    /// Wire bytes or TLS plaintext.
    SetStream(Stream),
    SetFormat(Format),
    /// Open chunk `n` of the followed stream in the payload editor.
    ToEditor(usize),
    CloseFollow,
}

impl Conversations {
    /// The conversations in the chosen order.
    pub fn sorted(&self) -> Vec<&Conversation> {
        let mut v: Vec<&Conversation> = self.table.list().iter().collect();
        let col = self.sort;
        // Stable, and by start within equal values: the order stays put as counts change.
        v.sort_by(|x, y| {
            let o = col.compare(x, y).then(x.first_ns.cmp(&y.first_ns));
            if self.descending {
                o.reverse()
            } else {
                o
            }
        });
        v
    }

    fn reset(&mut self) {
        self.table.clear();
        self.chosen = None;
        self.follow = None;
    }
}

/// What [`observe`] asks of [`observed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    /// Rebuild the followed stream (the packet list holds its new packets by then).
    Refresh,
}

/// Every message, before its area handles it: packets are counted in their
/// conversations; a new capture or a cleared buffer empties the table.
pub(super) fn observe(app: &mut App, msg: &Msg) -> After {
    let c = &mut app.conversations;
    match msg {
        Msg::Packets(PacketsMsg::Arrived(packets)) => {
            let followed = c.follow.as_ref().map(|f| f.key);
            let mut touched = false;
            for p in packets {
                if let Some(i) = c.table.add(p) {
                    touched |= Some(c.table.list()[i].key) == followed;
                }
            }
            if let (true, Some(f)) = (touched, &mut c.follow) {
                let size = c.table.get(&f.key).map_or(0, |conv| conv.ids(f.stream).len());
                if size <= LIVE_FOLLOW_PACKETS {
                    return After::Refresh;
                }
                f.stale = true;
            }
        }
        Msg::Packets(PacketsMsg::Clear | PacketsMsg::Cleared) | Msg::Capture(CaptureMsg::Started(_)) => c.reset(),
        Msg::App(AppMsg::Tick { .. }) if c.follow.as_ref().is_some_and(|f| f.stale) => return After::Refresh,
        _ => {}
    }
    After::Nothing
}

/// After the message was handled.
pub(super) fn observed(app: &mut App, after: After) {
    if after == After::Refresh {
        refresh(app);
    }
}

/// Rebuild the followed stream from the packets held.
fn refresh(app: &mut App) {
    let App { conversations, packets, .. } = app;
    let Some(f) = &mut conversations.follow else { return };
    let Some(conv) = conversations.table.get(&f.key) else { return };
    let ids = conv.ids(f.stream);
    let held: Vec<_> = ids.iter().filter_map(|id| packets.packet(*id)).cloned().collect();
    f.not_held = ids.len() - held.len();
    f.view = follow(conv, f.stream, held.iter().map(|p| &**p));
    f.stale = false;
}

/// Wireshark's conversation filter for `key` (an address or port said once when both ends share it).
pub fn wireshark_filter(key: &ConversationKey) -> String {
    let (a, b) = (key.a, key.b);
    let ip = if a.is_ipv6() { "ipv6.addr" } else { "ip.addr" };
    let mut terms = vec![format!("{ip} == {}", a.ip())];
    if b.ip() != a.ip() {
        terms.push(format!("{ip} == {}", b.ip()));
    }
    match key.protocol {
        Protocol::Tcp | Protocol::Udp => {
            let proto = if key.protocol == Protocol::Tcp { "tcp" } else { "udp" };
            terms.push(format!("{proto}.port == {}", a.port()));
            if b.port() != a.port() {
                terms.push(format!("{proto}.port == {}", b.port()));
            }
        }
        Protocol::Icmp => terms.insert(0, "icmp".into()),
        Protocol::Icmpv6 => terms.insert(0, "icmpv6".into()),
        Protocol::Other(n) => terms.push(format!("ip.proto == {n}")),
    }
    terms.join(" && ")
}

/// Does the list still hold a packet (or record) of `conv`?
fn any_held(app: &App, conv: &Conversation) -> bool {
    conv.packet_ids.iter().chain(&conv.record_ids).any(|id| app.packets.packet(*id).is_some())
}

fn focused_key(app: &mut App) -> Option<ConversationKey> {
    let key = app.packets.focused_packet().and_then(|p| app.conversations.table.of(p)).map(|c| c.key);
    if key.is_none() {
        app.notify(Level::Error, "Pick a packet in the list first.");
    }
    key
}

pub(super) fn update(app: &mut App, msg: ConversationsMsg) -> Vec<Effect> {
    match msg {
        ConversationsMsg::SortBy(col) => {
            let c = &mut app.conversations;
            if c.sort == col {
                c.descending = !c.descending;
            } else {
                (c.sort, c.descending) = (col, false);
            }
        }
        ConversationsMsg::Choose(key) => return choose(app, key),
        ConversationsMsg::ChooseFocused => {
            if let Some(key) = focused_key(app) {
                return choose(app, key);
            }
        }
        ConversationsMsg::Follow(key) => start_follow(app, key),
        ConversationsMsg::FollowFocused => {
            if let Some(key) = focused_key(app) {
                start_follow(app, key);
            }
        }
        ConversationsMsg::SetStream(stream) => {
            if let Some(f) = &mut app.conversations.follow {
                if f.stream != stream {
                    f.stream = stream;
                    refresh(app);
                }
            }
        }
        ConversationsMsg::SetFormat(format) => {
            if let Some(f) = &mut app.conversations.follow {
                f.format = format;
            }
        }
        ConversationsMsg::ToEditor(n) => {
            let chunk = app.conversations.follow.as_ref().and_then(|f| f.view.chunks.get(n));
            match chunk {
                Some(c) if !c.is_gap() && !c.packets.is_empty() => {
                    let open = EditorMsg::OpenBytes { packet_id: c.packets[0], bytes: c.bytes().to_vec() };
                    return super::update(app, open);
                }
                Some(_) => app.notify(Level::Error, "That part of the stream was not captured: nothing to edit."),
                None => {}
            }
        }
        ConversationsMsg::CloseFollow => app.conversations.follow = None,
    }
    Vec::new()
}

fn choose(app: &mut App, key: ConversationKey) -> Vec<Effect> {
    let Some(conv) = app.conversations.table.get(&key) else { return Vec::new() };
    if !any_held(app, conv) {
        app.notify(Level::Error, format!("No packet of {key} is held any more to filter on."));
        return Vec::new();
    }
    let text = wireshark_filter(&key);
    app.conversations.chosen = Some((key, text.clone()));
    let fx = super::update(app, PacketsMsg::SetFilter(text));
    app.tab = Tab::Capture;
    fx
}

fn start_follow(app: &mut App, key: ConversationKey) {
    let Some(conv) = app.conversations.table.get(&key) else { return };
    let stream = if conv.has_plaintext() { Stream::Plaintext } else { Stream::Wire };
    let format = app.conversations.follow.as_ref().map_or(Format::default(), |f| f.format);
    let view = FollowStream { key, stream, client: conv.client, server: conv.server(), chunks: Vec::new() };
    app.conversations.follow = Some(Follow { key, stream, format, view, not_held: 0, stale: false });
    refresh(app);
    app.tab = Tab::Conversations;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::update;
    use pidcap_api::protocol::Started;
    use pidcap_packet::build::flags;
    use pidcap_packet::build::{build, TcpFields, Transport};
    use pidcap_packet::dfilter::DisplayFilter;
    use pidcap_packet::stream::{Data, Side};
    use pidcap_packet::{CapturedPacket, Direction, Verdict};
    use pidcap_packet::{TlsInfo, TlsLibrary, TlsRecord};
    use std::sync::Arc;

    const CLIENT: &str = "127.0.0.1:40000";
    const SERVER: &str = "127.0.0.1:8000";

    /// A packet captured at the client: `up` from the client to `server`.
    fn seg(id: u64, server: &str, up: bool, seq: u32, f: u8, payload: &[u8]) -> CapturedPacket {
        let (c, s) = (CLIENT.parse().unwrap(), server.parse().unwrap());
        let (src, dst) = if up { (c, s) } else { (s, c) };
        let data =
            build(src, dst, 64, Transport::Tcp(TcpFields { seq, ack: 1, flags: f, window: 100 }), payload).unwrap();
        let dir = if up { Direction::Outbound } else { Direction::Inbound };
        let len = data.len() as u32;
        CapturedPacket::new(
            id,
            1_700_000_000_000_000_000 + id * 1_000_000,
            42,
            "curl".into(),
            7,
            dir,
            Verdict::Pass,
            len,
            data,
        )
    }

    fn record(id: u64, up: bool, offset: u32, plaintext: &[u8]) -> CapturedPacket {
        CapturedPacket::tls_record(TlsRecord {
            id,
            timestamp_ns: 1_700_000_000_000_000_000 + id * 1_000_000,
            pid: 42,
            comm: "curl".into(),
            socket_cookie: 7,
            direction: if up { Direction::Outbound } else { Direction::Inbound },
            local: CLIENT.parse().unwrap(),
            remote: SERVER.parse().unwrap(),
            info: TlsInfo { tid: 42, library: TlsLibrary::Openssl },
            plaintext,
            true_len: plaintext.len() as u64,
            stream_offset: offset,
        })
    }

    fn arrive(app: &mut App, ps: Vec<CapturedPacket>) -> Vec<Effect> {
        update(app, PacketsMsg::Arrived(ps.into_iter().map(Arc::new).collect()))
    }

    /// An HTTP exchange on 40000 -> 8000 (ids 1-7) and a UDP datagram (id 8).
    fn exchange() -> Vec<CapturedPacket> {
        let udp = {
            let data =
                build(CLIENT.parse().unwrap(), "127.0.0.1:53".parse().unwrap(), 64, Transport::Udp, b"dns?").unwrap();
            let len = data.len() as u32;
            CapturedPacket::new(
                8,
                1_700_000_000_008_000_000,
                43,
                "dig".into(),
                8,
                Direction::Outbound,
                Verdict::Pass,
                len,
                data,
            )
        };
        vec![
            seg(1, SERVER, true, 100, flags::SYN, b""),
            seg(2, SERVER, false, 500, flags::SYN | flags::ACK, b""),
            seg(3, SERVER, true, 101, flags::ACK, b""),
            seg(4, SERVER, true, 101, flags::PSH | flags::ACK, b"GET / HTTP/1.0\r\n\r\n"),
            seg(5, SERVER, false, 501, flags::PSH | flags::ACK, b"HTTP/1.0 200 OK\r\n\r\n"),
            seg(6, SERVER, false, 520, flags::PSH | flags::ACK | flags::FIN, b"hello"),
            seg(7, SERVER, true, 119, flags::FIN | flags::ACK, b""),
            udp,
        ]
    }

    fn key(app: &App) -> ConversationKey {
        app.conversations.table.list()[0].key
    }

    #[test]
    fn arriving_packets_are_counted_once_and_a_new_capture_or_a_clear_empties_the_table() {
        let mut app = App::new();
        arrive(&mut app, exchange());
        let t = &app.conversations.table;
        assert_eq!(t.len(), 2);
        let c = &t.list()[0];
        assert_eq!((c.client.to_string(), c.server().to_string()), (CLIENT.to_string(), SERVER.to_string()));
        let (up, down) = c.flows(Stream::Wire);
        assert_eq!((up.packets, down.packets, up.payload, down.payload), (4, 3, 18, 24));
        assert_eq!(c.state(), Some(pidcap_packet::stream::TcpState::Closed));
        assert_eq!(process_label(c), "42/curl");
        // The feed handing a packet again (a backlog overlapping a page) counts nothing more.
        let before = app.conversations.table.clone();
        arrive(&mut app, exchange()[6..7].to_vec());
        assert_eq!(app.conversations.table, before);
        update(&mut app, PacketsMsg::Clear);
        assert!(app.conversations.table.is_empty());
        arrive(&mut app, exchange());
        let k = key(&app);
        update(&mut app, ConversationsMsg::Follow(k));
        update(&mut app, CaptureMsg::Started(Started { session: 2, first_id: 1, targets: vec![42] }));
        assert!(app.conversations.table.is_empty() && app.conversations.follow.is_none());
        // Ids start again with the new capture.
        arrive(&mut app, exchange());
        assert_eq!(app.conversations.table.len(), 2);
        update(&mut app, PacketsMsg::Cleared);
        assert!(app.conversations.table.is_empty());
    }

    #[test]
    fn sorting_by_a_column_and_again_reverses() {
        let mut app = App::new();
        let mut ps = exchange();
        ps.push(seg(9, "127.0.0.1:9000", true, 1, flags::PSH | flags::ACK, &[b'x'; 500]));
        arrive(&mut app, ps);
        let order = |app: &App| app.conversations.sorted().iter().map(|c| c.server().port()).collect::<Vec<_>>();
        assert_eq!(order(&app), [8000, 53, 9000], "by start, the default");
        update(&mut app, ConversationsMsg::SortBy(Column::ClientBytes));
        assert_eq!(order(&app), [53, 8000, 9000]);
        assert!(!app.conversations.descending);
        update(&mut app, ConversationsMsg::SortBy(Column::ClientBytes));
        assert_eq!(order(&app), [9000, 8000, 53]);
        update(&mut app, ConversationsMsg::SortBy(Column::Server));
        assert_eq!((order(&app), app.conversations.descending), (vec![53, 8000, 9000], false));
        update(&mut app, ConversationsMsg::SortBy(Column::State));
        assert_eq!(order(&app)[0], 53, "no state (UDP) first");
        for col in Column::ALL {
            update(&mut app, ConversationsMsg::SortBy(col));
            assert_eq!(app.conversations.sorted().len(), 3);
        }
    }

    #[test]
    fn filters_in_wireshark_words() {
        let k = ConversationKey {
            protocol: Protocol::Tcp,
            a: "10.0.0.1:40000".parse().unwrap(),
            b: "10.0.0.2:80".parse().unwrap(),
            instance: 0,
        };
        assert_eq!(
            wireshark_filter(&k),
            "ip.addr == 10.0.0.1 && ip.addr == 10.0.0.2 && tcp.port == 40000 && tcp.port == 80"
        );
        let k = ConversationKey {
            protocol: Protocol::Udp,
            a: "[::1]:53".parse().unwrap(),
            b: "[::1]:5353".parse().unwrap(),
            instance: 0,
        };
        assert_eq!(wireshark_filter(&k), "ipv6.addr == ::1 && udp.port == 53 && udp.port == 5353");
        let k = ConversationKey {
            protocol: Protocol::Icmp,
            a: "10.0.0.1:0".parse().unwrap(),
            b: "10.0.0.1:0".parse().unwrap(),
            instance: 0,
        };
        assert_eq!(wireshark_filter(&k), "icmp && ip.addr == 10.0.0.1");
    }

    /// The text the list is given is one the display filter takes, and it
    /// selects the conversation's packets both ways and not another's.
    #[test]
    fn a_conversation_filter_parses_and_selects_its_packets() {
        let packet = |from: &str, to: &str, tcp: bool| {
            let t = if tcp { Transport::Tcp(TcpFields::default()) } else { Transport::Udp };
            let data = build(from.parse().unwrap(), to.parse().unwrap(), 64, t, b"x").unwrap();
            let len = data.len() as u32;
            CapturedPacket::new(1, 0, 1, "c".into(), 1, Direction::Outbound, Verdict::Pass, len, data)
        };
        for (proto, a, b, other, tcp) in [
            (Protocol::Tcp, "10.0.0.1:40000", "10.0.0.2:80", "10.0.0.1:40001", true),
            (Protocol::Udp, "[::1]:53", "[::1]:5353", "[::1]:5354", false),
        ] {
            let k = ConversationKey { protocol: proto, a: a.parse().unwrap(), b: b.parse().unwrap(), instance: 0 };
            let f = DisplayFilter::parse(&wireshark_filter(&k)).unwrap();
            assert!(f.matches(&packet(a, b, tcp)) && f.matches(&packet(b, a, tcp)), "{}", wireshark_filter(&k));
            assert!(!f.matches(&packet(other, b, tcp)), "{}", wireshark_filter(&k));
        }
        let icmp = ConversationKey {
            protocol: Protocol::Icmp,
            a: "10.0.0.1:0".parse().unwrap(),
            b: "10.0.0.2:0".parse().unwrap(),
            instance: 0,
        };
        DisplayFilter::parse(&wireshark_filter(&icmp)).unwrap();
    }

    #[test]
    fn choosing_a_conversation_filters_the_packet_list_to_it() {
        let mut app = App::new();
        let mut ps = exchange();
        // Another connection to the same server, and one to another port: not shown.
        ps.push(seg(9, "127.0.0.1:9000", true, 1, flags::PSH | flags::ACK, b"other"));
        arrive(&mut app, ps);
        let k = key(&app);
        update(&mut app, ConversationsMsg::Choose(k));
        let text = app.packets.filter_text.clone();
        assert_eq!(app.packets.filter_error, None, "{text}");
        // In Wireshark's words.
        let k = key(&app);
        assert_eq!(text, wireshark_filter(&k));
        assert_eq!(app.packets.shown, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(app.conversations.chosen, Some((k, text)));
        assert_eq!(app.tab, Tab::Capture);
        // From the packet shown: no packet, a notice; one, its conversation.
        let mut app2 = App::new();
        arrive(&mut app2, exchange());
        update(&mut app2, ConversationsMsg::ChooseFocused);
        assert!(app2.notices.last().unwrap().text.contains("Pick a packet"));
        update(&mut app2, PacketsMsg::Select { id: 8, extend: false });
        update(&mut app2, ConversationsMsg::ChooseFocused);
        assert_eq!(app2.packets.shown, [8]);
    }

    #[test]
    fn following_shows_both_directions_in_order_and_stays_live() {
        let mut app = App::new();
        let ps = exchange();
        arrive(&mut app, ps[..5].to_vec());
        update(&mut app, PacketsMsg::Select { id: 4, extend: false });
        update(&mut app, ConversationsMsg::FollowFocused);
        assert_eq!(app.tab, Tab::Conversations);
        let f = app.conversations.follow.as_ref().unwrap();
        assert_eq!((f.stream, f.format, f.not_held, f.stale), (Stream::Wire, Format::Ascii, 0, false));
        let sides: Vec<(Side, &[u8])> = f.view.chunks.iter().map(|c| (c.from, c.bytes())).collect();
        assert_eq!(
            sides,
            [(Side::Client, &b"GET / HTTP/1.0\r\n\r\n"[..]), (Side::Server, &b"HTTP/1.0 200 OK\r\n\r\n"[..])]
        );
        // More of it arrives: the followed stream follows.
        arrive(&mut app, ps[5..].to_vec());
        let f = app.conversations.follow.as_ref().unwrap();
        assert_eq!(f.view.chunks[1].bytes(), b"HTTP/1.0 200 OK\r\n\r\nhello");
        assert_eq!(f.view.chunks[1].packets, [5, 6]);
        update(&mut app, ConversationsMsg::SetFormat(Format::Both));
        assert_eq!(app.conversations.follow.as_ref().unwrap().format, Format::Both);
        // Following another keeps the format.
        let udp = app.conversations.table.list()[1].key;
        update(&mut app, ConversationsMsg::Follow(udp));
        let f = app.conversations.follow.as_ref().unwrap();
        assert_eq!((f.key, f.format, f.view.chunks.len()), (udp, Format::Both, 1));
        update(&mut app, ConversationsMsg::CloseFollow);
        assert!(app.conversations.follow.is_none());
        update(&mut app, ConversationsMsg::FollowFocused);
        assert_eq!(app.conversations.follow.as_ref().unwrap().key, key(&app));
    }

    #[test]
    fn a_big_followed_conversation_is_brought_up_to_date_at_the_tick() {
        let mut app = App::new();
        let ps: Vec<CapturedPacket> =
            (1..=LIVE_FOLLOW_PACKETS as u64 + 1).map(|i| seg(i, SERVER, true, i as u32, flags::ACK, b"x")).collect();
        arrive(&mut app, ps);
        let k = key(&app);
        update(&mut app, ConversationsMsg::Follow(k));
        assert_eq!(
            app.conversations.follow.as_ref().unwrap().view.totals(Side::Client),
            (LIVE_FOLLOW_PACKETS as u64 + 1, 0)
        );
        let next = LIVE_FOLLOW_PACKETS as u64 + 2;
        arrive(&mut app, vec![seg(next, SERVER, true, next as u32, flags::ACK, b"y")]);
        let f = app.conversations.follow.as_ref().unwrap();
        assert!(f.stale);
        assert_eq!(f.view.totals(Side::Client).0, next - 1, "not rebuilt per batch");
        update(&mut app, AppMsg::Tick { now_ns: 0 });
        let f = app.conversations.follow.as_ref().unwrap();
        assert!(!f.stale);
        assert_eq!(f.view.totals(Side::Client).0, next);
    }

    #[test]
    fn packets_the_list_no_longer_holds_are_counted_and_left_out() {
        let mut app = App::new();
        app.packets.capacity = 4;
        arrive(&mut app, exchange());
        let k = key(&app);
        update(&mut app, ConversationsMsg::Follow(k));
        let f = app.conversations.follow.as_ref().unwrap();
        // Held: 5, 6, 7 (and the UDP 8): the request (packet 4) is gone.
        assert_eq!(f.not_held, 4);
        assert_eq!(f.view.chunks.len(), 1);
        assert_eq!(f.view.chunks[0].from, Side::Server);
        assert_eq!(app.conversations.table.list()[0].flows(Stream::Wire).0.packets, 4, "still counted");
    }

    #[test]
    fn tls_plaintext_is_followed_by_default_and_the_wire_bytes_a_toggle_away() {
        let mut app = App::new();
        let mut ps = exchange()[..3].to_vec();
        ps.push(seg(4, SERVER, true, 101, flags::PSH | flags::ACK, b"\x17\x03\x03 cipher"));
        ps.push(record(5, true, 0, b"GET /secret HTTP/1.1\r\n\r\n"));
        ps.push(record(6, false, 0, b"HTTP/1.1 200 OK\r\n\r\n"));
        ps.push(record(7, false, 99, b"after a lost record"));
        arrive(&mut app, ps);
        assert_eq!(app.conversations.table.len(), 1, "records are in their connection");
        let k = key(&app);
        update(&mut app, ConversationsMsg::Follow(k));
        let f = app.conversations.follow.as_ref().unwrap();
        assert_eq!(f.stream, Stream::Plaintext);
        assert_eq!(f.view.chunks[0].bytes(), b"GET /secret HTTP/1.1\r\n\r\n");
        assert_eq!(f.view.chunks[2].data, Data::Gap { len: 80, reason: pidcap_packet::stream::GapReason::NotCaptured });
        // A record's message to the editor: its plaintext, resent over TLS.
        update(&mut app, ConversationsMsg::ToEditor(0));
        let e = app.editor.as_ref().unwrap();
        assert_eq!((e.packet_id, e.payload.as_slice()), (5, &b"GET /secret HTTP/1.1\r\n\r\n"[..]));
        assert_eq!(e.record.map(|r| r.library), Some(TlsLibrary::Openssl));
        assert_eq!(app.tab, Tab::Capture);
        assert!(app.resend.form.tls);
        // A gap has nothing to edit.
        let notices = app.notices.len();
        update(&mut app, ConversationsMsg::ToEditor(2));
        assert_eq!(app.notices.len(), notices + 1);
        assert_eq!(app.editor.as_ref().unwrap().packet_id, 5, "the editor is left as it was");
        update(&mut app, ConversationsMsg::SetStream(Stream::Wire));
        let f = app.conversations.follow.as_ref().unwrap();
        assert_eq!(f.stream, Stream::Wire);
        assert_eq!(f.view.chunks.len(), 1);
        assert_eq!(f.view.chunks[0].bytes(), b"\x17\x03\x03 cipher");
        // A wire message goes to the editor as a payload of its packet.
        update(&mut app, ConversationsMsg::ToEditor(0));
        let e = app.editor.as_ref().unwrap();
        assert_eq!((e.packet_id, e.record), (4, None));
        assert!(!app.resend.form.tls);
    }

    #[test]
    fn opening_bytes_of_a_packet_no_longer_held_says_so() {
        let mut app = App::new();
        update(&mut app, EditorMsg::OpenBytes { packet_id: 3, bytes: b"x".to_vec() });
        assert!(app.editor.is_none());
        assert!(app.notices.last().unwrap().text.contains("#3"));
    }
}
