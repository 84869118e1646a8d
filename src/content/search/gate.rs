//! One uncached search at a time per client address. A search the cache cannot answer
//! runs the full-text query (milliseconds of a core each at 10,000 posts): a script
//! sending many at once from one address would otherwise keep every core busy. A
//! second uncached search from an address whose first is still running is refused
//! (the reader is asked to retry in a second); cached answers are never refused.
//!
//! The set holds only the addresses searching right now, so it is bounded by the
//! requests in flight, and leaves nothing behind.

use std::collections::HashSet;

use parking_lot::Mutex;

#[derive(Default)]
pub struct SearchGate {
    searching: Mutex<HashSet<u64>>,
}

/// An address's turn; it ends when dropped.
pub struct Turn<'a> {
    gate: &'a SearchGate,
    client: u64,
}

impl SearchGate {
    /// The turn of `client` (see `popular::client_hash`), or None while its previous
    /// uncached search is still running.
    pub fn enter(&self, client: u64) -> Option<Turn<'_>> {
        // The lock is released before a refused turn could be dropped (its drop locks).
        let entered = self.searching.lock().insert(client);
        entered.then(|| Turn { gate: self, client })
    }

    /// Addresses searching right now.
    pub fn busy(&self) -> usize {
        self.searching.lock().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.searching.lock().remove(&self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_per_address_and_none_left_behind() {
        let gate = SearchGate::default();
        let first = gate.enter(1).expect("a first search");
        assert!(
            gate.enter(1).is_none(),
            "a second at once from the same address"
        );
        let other = gate.enter(2).expect("another address is not held back");
        drop(first);
        assert!(
            gate.enter(1).is_some(),
            "its turn again once the first ended"
        );
        drop(other);
        assert_eq!(gate.busy(), 0);
    }
}
