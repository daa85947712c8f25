//! The bounded in-memory packet ring: the last N packets (10,000 by default,
//! as in the seed), FIFO, counting what it evicts.

use pidcap_packet::CapturedPacket;
use std::collections::VecDeque;
use std::sync::Arc;

/// Default capacity, as in the seed's kernel ring.
pub const DEFAULT_RING_SIZE: usize = 10_000;
/// The largest capacity a client may ask for.
pub const MAX_RING_SIZE: usize = 10_000_000;

#[derive(Debug)]
pub struct PacketRing {
    buf: VecDeque<Arc<CapturedPacket>>,
    capacity: usize,
    evicted: u64,
}

impl PacketRing {
    /// A ring holding at most `capacity` packets (at least 1).
    pub fn new(capacity: usize) -> PacketRing {
        let capacity = capacity.max(1);
        PacketRing { buf: VecDeque::with_capacity(capacity.min(1 << 16)), capacity, evicted: 0 }
    }

    /// Append a packet, evicting the oldest when full.
    pub fn push(&mut self, p: Arc<CapturedPacket>) {
        if self.buf.len() == self.capacity {
            self.buf.pop_front();
            self.evicted += 1;
        }
        self.buf.push_back(p);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Packets evicted because the ring was full, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Remove every packet (not counted as evicted).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Up to `limit` packets with an id greater than `after`, oldest first.
    /// Ids increase along the ring, so this is a binary search and a copy.
    pub fn since(&self, after: u64, limit: usize) -> Vec<Arc<CapturedPacket>> {
        let start = self.buf.partition_point(|p| p.id <= after);
        self.buf.range(start..).take(limit).cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<CapturedPacket>> {
        self.buf.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::{Direction, Verdict};

    fn pkt(id: u64) -> Arc<CapturedPacket> {
        Arc::new(CapturedPacket::new(id, 0, 1, "t".into(), 0, Direction::Inbound, Verdict::Pass, 0, vec![]))
    }

    #[test]
    fn keeps_the_last_n_and_counts_evictions() {
        let mut r = PacketRing::new(3);
        for id in 1..=5 {
            r.push(pkt(id));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.evicted(), 2);
        let ids: Vec<u64> = r.iter().map(|p| p.id).collect();
        assert_eq!(ids, [3, 4, 5]);
    }

    #[test]
    fn since_pages_without_gap_or_duplicate() {
        let mut r = PacketRing::new(100);
        for id in 1..=10 {
            r.push(pkt(id));
        }
        let mut seen = vec![];
        let mut after = 0;
        loop {
            let page = r.since(after, 3);
            if page.is_empty() {
                break;
            }
            after = page.last().unwrap().id;
            seen.extend(page.iter().map(|p| p.id));
        }
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        assert!(r.since(10, 5).is_empty());
        assert_eq!(r.since(0, 0).len(), 0);
    }

    #[test]
    fn clear_empties_without_counting_evictions() {
        let mut r = PacketRing::new(2);
        r.push(pkt(1));
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.evicted(), 0);
        assert_eq!(PacketRing::new(0).capacity(), 1);
    }
}
