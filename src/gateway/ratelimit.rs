//! Failed-auth rate limiting per peer address, loopback included: being local earns no
//! exemption. Only failures are counted, and a success does not reset the count, so a
//! bogus token can neither bypass nor reset the limiter.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const BLOCK: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Entry {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct RateLimiter {
    peers: HashMap<IpAddr, Entry>,
}

impl RateLimiter {
    /// `Err(retry_after)` while the address is blocked.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if let Some(e) = self.peers.get_mut(&ip)
            && let Some(until) = e.blocked_until
        {
            if now < until {
                return Err(until - now);
            }
            e.blocked_until = None;
            e.failures.clear();
        }
        Ok(())
    }

    /// Records a failure; returns true when it tipped the address into the block.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.peers.len() > 100_000 {
            // Bound memory under an address-spraying flood: forget entries that expired.
            self.peers.retain(|_, e| {
                e.blocked_until.is_some_and(|u| u > now)
                    || e.failures.back().is_some_and(|t| now - *t < WINDOW)
            });
        }
        let e = self.peers.entry(ip).or_default();
        while e.failures.front().is_some_and(|t| now - *t >= WINDOW) {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        if e.failures.len() >= MAX_FAILURES && e.blocked_until.is_none() {
            e.blocked_until = Some(now + BLOCK);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_for_five_minutes() {
        let mut rl = RateLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..9 {
            assert!(!rl.fail(ip, t0 + Duration::from_secs(i)));
            assert!(rl.check(ip, t0 + Duration::from_secs(i)).is_ok());
        }
        assert!(rl.fail(ip, t0 + Duration::from_secs(9)));
        let wait = rl.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert!(wait > Duration::from_secs(290) && wait <= BLOCK);
        assert!(rl.check(ip, t0 + Duration::from_secs(9) + BLOCK).is_ok());
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(rl.check(other, t0).is_ok());
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_block() {
        let mut rl = RateLimiter::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(!rl.fail(ip, t0 + Duration::from_secs(i * 7)));
        }
    }
}
