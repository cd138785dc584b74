//! Time as the service sees it. Commands and process managers read the clock here, so
//! tests can move time on (offer expiry) without waiting.

use std::sync::Mutex;

use crate::Time;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        chrono::Utc::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock {
    now: Mutex<Time>,
}

impl ManualClock {
    pub fn new(start: Time) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut now) = self.now.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        self.now
            .lock()
            .map(|now| *now)
            .unwrap_or_else(|poisoned| *poisoned.into_inner())
    }
}
