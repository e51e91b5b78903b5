//! Pre-authorisation: money held for gateway calls in flight.
//!
//! Before a metered call reaches a model, the gateway reserves the most the call can cost
//! ([`shoulders_state::State::max_charge`] at the request's `max_tokens`), provided the payer's
//! balance less what its other calls in flight already hold covers it; otherwise the call is
//! refused with 402 and no model runs. Without this a payer with nothing could make upstream
//! calls whose receipts the fold then refuses (the model's work is given away), and concurrent
//! calls by one payer could together spend more than it holds.
//!
//! The reservation lives only in this process, in a map under one mutex, and is released by a
//! [`Hold`]'s `Drop`: after the call's receipt is committed (so the balance read by the next
//! reservation already shows the charge), or when the call fails, panics or is cancelled (a
//! client that hangs up, the request timeout). Nothing about it is durable, and nothing needs to
//! be: only a committed receipt moves money, so a crash mid-call leaves no charge and, the map
//! being gone with the process, no stale hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Money held for calls in flight, per `(payer, currency)`, in micro-units.
#[derive(Debug, Default)]
pub struct Reservations {
    held: Mutex<HashMap<(String, String), u128>>,
}

/// Why a reservation was refused: the balance read and what calls in flight already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub balance_micros: i128,
    pub held_micros: u128,
}

impl Reservations {
    /// Reserve `amount_micros` for `payer` in `currency` if `balance()` less what is already
    /// held covers it. `balance` is read under the map's lock, so a receipt committed by a call
    /// whose hold was released before this one locked is already in it, and one whose hold is
    /// still here is counted by its hold (which is at least its charge): two reservations can
    /// never both spend the same money.
    pub fn reserve(
        self: &Arc<Self>,
        payer: &str,
        currency: &str,
        amount_micros: u128,
        balance: impl FnOnce() -> i128,
    ) -> Result<Hold, Shortfall> {
        let mut held = self.lock();
        let key = (payer.to_string(), currency.to_string());
        let already = held.get(&key).copied().unwrap_or(0);
        let balance_micros = balance();
        let available = balance_micros.saturating_sub(i128::try_from(already).unwrap_or(i128::MAX));
        if i128::try_from(amount_micros).map_or(true, |a| available < a) {
            return Err(Shortfall {
                balance_micros,
                held_micros: already,
            });
        }
        if amount_micros > 0 {
            *held.entry(key.clone()).or_insert(0) += amount_micros;
        }
        Ok(Hold {
            reservations: Arc::clone(self),
            key,
            amount_micros,
        })
    }

    /// What calls in flight hold for `payer` in `currency`.
    pub fn held_micros(&self, payer: &str, currency: &str) -> u128 {
        self.lock()
            .get(&(payer.to_string(), currency.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// A panic while the lock is held leaves the map consistent (every update is one statement),
    /// so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u128>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Money reserved for one call; released when dropped, on every path out of the call.
#[derive(Debug)]
pub struct Hold {
    reservations: Arc<Reservations>,
    key: (String, String),
    amount_micros: u128,
}

impl Hold {
    pub fn amount_micros(&self) -> u128 {
        self.amount_micros
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.amount_micros == 0 {
            return;
        }
        let mut held = self.reservations.lock();
        if let Some(total) = held.get_mut(&self.key) {
            *total = total.saturating_sub(self.amount_micros);
            if *total == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_against_the_balance_until_dropped() {
        let r = Arc::new(Reservations::default());
        let a = r.reserve("bob", "USD", 600, || 1000).unwrap();
        assert_eq!(r.held_micros("bob", "USD"), 600);
        // Another call would overspend with the first one in flight...
        assert_eq!(
            r.reserve("bob", "USD", 401, || 1000).unwrap_err(),
            Shortfall {
                balance_micros: 1000,
                held_micros: 600
            }
        );
        // ...but exactly what is left is fine, and other payers and currencies are separate.
        let b = r.reserve("bob", "USD", 400, || 1000).unwrap();
        let c = r.reserve("bob", "EUR", 1000, || 1000).unwrap();
        let d = r.reserve("ann", "USD", 1000, || 1000).unwrap();
        drop(a);
        assert_eq!(r.held_micros("bob", "USD"), 400);
        drop((b, c, d));
        assert_eq!(r.held_micros("bob", "USD"), 0);
        assert!(r.lock().is_empty(), "released entries are removed");
        // A negative or zero balance covers only a free call.
        assert!(r.reserve("bob", "USD", 1, || 0).is_err());
        assert!(r.reserve("bob", "USD", 1, || -5).is_err());
        assert!(r.reserve("bob", "USD", 0, || 0).is_ok());
    }

    #[test]
    fn a_panicking_call_releases_its_hold() {
        let r = Arc::new(Reservations::default());
        let hold = r.reserve("bob", "USD", 700, || 1000).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _hold = hold;
            panic!("the call failed");
        }));
        assert!(outcome.is_err());
        assert_eq!(r.held_micros("bob", "USD"), 0);
        assert!(r.reserve("bob", "USD", 1000, || 1000).is_ok());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_balance() {
        let r = Arc::new(Reservations::default());
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (r, barrier) = (Arc::clone(&r), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let hold = r.reserve("bob", "USD", 10, || 55).ok();
                    // Hold it until every thread has tried.
                    barrier.wait();
                    hold.is_some()
                })
            })
            .collect();
        let granted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|g| *g)
            .count();
        assert_eq!(granted, 5, "55 covers five holds of 10");
        assert_eq!(r.held_micros("bob", "USD"), 0);
    }
}
