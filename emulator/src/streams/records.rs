//! A bounded record of frames for tests to look at: the newest kept, the oldest dropped
//! and counted once a count or a byte budget is passed, so a long run or a hostile peer
//! cannot grow the emulator without bound.

use std::collections::VecDeque;

/// The most bytes of frames one record keeps, whatever its count.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Frames in arrival order, with a cursor for the "wait for the next one" calls.
pub(crate) struct Record<T> {
    /// Each frame with its size on the wire, which is what the byte budget counts.
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// How many of `items` the waiting calls have handed out.
    taken: usize,
    dropped: u64,
}

impl<T> Default for Record<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            taken: 0,
            dropped: 0,
        }
    }
}

impl<T: Clone> Record<T> {
    /// Keeps `item` (`size` bytes on the wire), dropping the oldest while more than
    /// `max` items or [`MAX_RECORD_BYTES`] are kept.
    pub(crate) fn push(&mut self, item: T, size: usize, max: usize) {
        self.items.push_back((item, size));
        self.bytes += size;
        while self.items.len() > max.max(1)
            || (self.bytes > MAX_RECORD_BYTES && self.items.len() > 1)
        {
            let Some((_, size)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.dropped += 1;
            // A dropped frame not handed out yet is lost to the waiters too: counted.
            self.taken = self.taken.saturating_sub(1);
        }
    }

    /// Every kept frame, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.items.iter().map(|(item, _)| item)
    }

    /// Every kept frame, oldest first, copied.
    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }

    /// `[frame, ...]` from the `offset`th kept, at most `limit`, as JSON of at most
    /// `max_bytes`; `None` if it would be larger.
    pub(crate) fn json_page(
        &self,
        offset: usize,
        limit: Option<usize>,
        max_bytes: usize,
    ) -> Option<Vec<u8>>
    where
        T: serde::Serialize,
    {
        let page = self.iter().skip(offset).take(limit.unwrap_or(usize::MAX));
        crate::http::json_list(page, max_bytes)
    }

    /// The next frame not handed out yet.
    pub(crate) fn take_next(&mut self) -> Option<T> {
        let (next, _) = self.items.get(self.taken)?;
        self.taken += 1;
        Some(next.clone())
    }

    /// How many frames were dropped to stay within the bounds.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_counts_the_rest() {
        let mut r = Record::default();
        for i in 0..5 {
            r.push(i, 1, 3);
        }
        assert_eq!(r.to_vec(), [2, 3, 4]);
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.take_next(), Some(2));
        r.push(5, 1, 3);
        // The cursor follows the frames it points at: 2 was handed out, 3 was not.
        assert_eq!(r.take_next(), Some(3));
    }

    #[test]
    fn keeps_within_the_byte_budget() {
        let mut r = Record::default();
        r.push(1, MAX_RECORD_BYTES / 2, 10);
        r.push(2, MAX_RECORD_BYTES / 2, 10);
        r.push(3, 1, 10);
        assert_eq!(r.to_vec(), [2, 3]);
        // One frame over the budget is still kept: it is the newest.
        r.push(4, MAX_RECORD_BYTES + 1, 10);
        assert_eq!(r.to_vec(), [4]);
        assert_eq!(r.dropped(), 3);
    }
}
