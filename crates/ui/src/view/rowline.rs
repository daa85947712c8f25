//! A packet-list row as one line of text (issue 13: packet to row under
//! 50 ms at 1,000 packets/s).
//!
//! At that rate nearly every row on screen is new in each frame, and the
//! browser's work is per element: a row of eleven cells was 23 layout
//! objects (the row, its cells and their texts), and laying them out,
//! styling and painting them kept Chromium's main thread 90 % busy on two
//! cores (p99 43-79 ms). Like Wireshark's list, a row is now plain text:
//! one text node in the list's monospace font, each cell padded or cut to
//! its column's width here (so nothing needs measuring) and the Info
//! column taking what is left. That halved the main thread's work and
//! brought p99 to 17-21 ms (docs/PERFORMANCE.md, "UI latency").
//!
//! The header's cells are placed from the same widths ([`offset`],
//! [`width`]), so they line up with the rows; [`cells`] reads a line back.

use crate::state::packets::Column;

/// Characters between two cells.
const GAP: usize = 1;

/// A column's width in characters (`None`: the Info column, the rest of the row).
pub fn width(c: Column) -> Option<usize> {
    Some(match c {
        Column::No => 6,
        Column::Time => 15,
        Column::Process => 11,
        Column::Direction => 3,
        // "TLS openssl", a decrypted record's.
        Column::Protocol => 11,
        Column::Source | Column::Destination => 15,
        Column::Length => 6,
        Column::Payload | Column::Verdict => 7,
        Column::Info => return None,
    })
}

/// Numbers are right-aligned, as in Wireshark.
pub fn right_aligned(c: Column) -> bool {
    matches!(c, Column::No | Column::Length | Column::Payload)
}

/// Where a column starts, in characters from the row's start.
pub fn offset(c: Column) -> usize {
    Column::ALL.iter().take_while(|x| **x != c).map(|x| width(*x).unwrap_or(0) + GAP).sum()
}

/// The row's line: `texts` in [`Column::ALL`]'s order, each padded to its
/// column or cut with `…` where it is wider (the Info column as it is).
pub fn line(texts: &[&str; 11]) -> String {
    let mut out = String::with_capacity(offset(Column::Info) + texts[10].len());
    for (c, text) in Column::ALL.iter().zip(texts) {
        let Some(w) = width(*c) else {
            out.push_str(text);
            break;
        };
        let n = text.chars().count();
        if n > w {
            out.extend(text.chars().take(w - 1));
            out.push('…');
        } else {
            let pad = std::iter::repeat_n(' ', w - n);
            if right_aligned(*c) {
                out.extend(pad);
                out.push_str(text);
            } else {
                out.push_str(text);
                out.extend(pad);
            }
        }
        out.extend(std::iter::repeat_n(' ', GAP));
    }
    out
}

/// A line's cells, trimmed (what [`line()`] made of them; a cut one ends in `…`).
pub fn cells(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    Column::ALL
        .iter()
        .map(|c| {
            let start = offset(*c).min(chars.len());
            let end = width(*c).map_or(chars.len(), |w| (start + w).min(chars.len()));
            chars[start..end].iter().collect::<String>().trim().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: [&str; 11] = [
        "42",
        "12:00:00.000001",
        "123/curl",
        "out",
        "HTTP TCP",
        "127.0.0.1:5000",
        "127.0.0.1:80",
        "120",
        "68",
        "pass",
        "GET / HTTP/1.1",
    ];

    #[test]
    fn a_line_reads_back_as_its_cells() {
        let l = line(&ROW);
        assert_eq!(cells(&l), ROW.map(String::from).to_vec());
    }

    #[test]
    fn each_cell_starts_at_its_column_and_numbers_end_at_its_edge() {
        let l: Vec<char> = line(&ROW).chars().collect();
        let at = |c: Column| l[offset(c)..].iter().collect::<String>();
        assert!(at(Column::Source).starts_with("127.0.0.1:5000 "));
        assert!(at(Column::Info).starts_with("GET /"));
        // "42" right-aligned in the 6 characters of No.
        assert_eq!(l[..6].iter().collect::<String>(), "    42");
        assert_eq!(offset(Column::No), 0);
        assert_eq!(offset(Column::Time), 7);
    }

    #[test]
    fn a_cell_wider_than_its_column_is_cut_with_an_ellipsis_and_the_next_still_lines_up() {
        let mut row = ROW;
        row[5] = "[2001:db8:aaaa:bbbb::1]:65535";
        row[2] = "4194304/verylongcommand";
        let l = line(&row);
        let c = cells(&l);
        assert_eq!(c[5], "[2001:db8:aaaa…");
        assert_eq!(c[2], "4194304/ve…");
        assert_eq!(c[6], "127.0.0.1:80");
        assert_eq!(l.chars().count(), offset(Column::Info) + "GET / HTTP/1.1".len());
    }

    #[test]
    fn wide_and_empty_texts_keep_the_columns() {
        let mut row = ROW;
        row[2] = "7/ünïcödé";
        row[9] = "";
        let c = cells(&line(&row));
        assert_eq!(c[2], "7/ünïcödé");
        assert_eq!(c[9], "");
        assert_eq!(c[10], "GET / HTTP/1.1");
    }
}
