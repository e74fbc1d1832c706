//! Where the solver finds keys, and the in-memory store an LNS's workers share.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use super::{AesKey, Solved};
use crate::ids::DevEui;
use crate::sync::lock;

/// Where the solver finds a device's keys: the LNS's device database.
///
/// [`Keys`] is a ready-made in-memory store; a database-backed LNS implements the two
/// look-ups itself. Both return owned values so an implementation may build them on the
/// fly; the solver calls each at most once per device and message.
pub trait KeyStore {
    /// The key that signs the device's join requests: the AppKey of LoRaWAN 1.0.x.
    /// `None` for ABP devices and devices the LNS does not know.
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey>;

    /// The device's current session, which signs its data uplinks. `None` before the
    /// first join accept and for devices the LNS does not know.
    fn session(&self, dev_eui: DevEui) -> Option<Session>;
}

impl<T: KeyStore + ?Sized> KeyStore for &T {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        (**self).join_key(dev_eui)
    }
    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        (**self).session(dev_eui)
    }
}

impl<T: KeyStore + ?Sized> KeyStore for Box<T> {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        (**self).join_key(dev_eui)
    }
    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        (**self).session(dev_eui)
    }
}

impl<T: KeyStore + ?Sized> KeyStore for Arc<T> {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        (**self).join_key(dev_eui)
    }
    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        (**self).session(dev_eui)
    }
}

/// A device's LoRaWAN 1.0.x session as the LNS keeps it: both session keys and both
/// frame counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The network session key (NwkSKey): signs data frames both ways, and encrypts MAC
    /// commands on FPort 0.
    pub nwk_s_key: AesKey,
    /// The application session key (AppSKey): encrypts the application payload both
    /// ways. `None` when the LNS leaves the payload to an application server.
    pub app_s_key: Option<AesKey>,
    /// The full 32-bit counter of the last of the session's uplinks accepted; `None`
    /// until the first one. The solver takes the high 16 bits of a new uplink's counter from it.
    pub fcnt_up: Option<u32>,
    /// The full 32-bit counter of the last of the session's downlinks sent; `None` until
    /// the first one. [`Keys::next_fcnt_down`] hands out the one after it.
    pub fcnt_down: Option<u32>,
}

impl Session {
    /// A fresh session that has seen no uplink and sent no downlink yet (the first of
    /// each has counter 0).
    pub fn new(nwk_s_key: AesKey) -> Self {
        Self {
            nwk_s_key,
            app_s_key: None,
            fcnt_up: None,
            fcnt_down: None,
        }
    }

    /// The session with its AppSKey.
    pub fn with_app_s_key(mut self, app_s_key: AesKey) -> Self {
        self.app_s_key = Some(app_s_key);
        self
    }

    /// The session with `fcnt_up` as the last accepted uplink counter.
    pub fn with_fcnt_up(mut self, fcnt_up: u32) -> Self {
        self.fcnt_up = Some(fcnt_up);
        self
    }

    /// The session with `fcnt_down` as the last downlink counter sent.
    pub fn with_fcnt_down(mut self, fcnt_down: u32) -> Self {
        self.fcnt_down = Some(fcnt_down);
        self
    }
}

/// Shards of the device map: a worker looking up one device read-locks one shard, and
/// adding a device write-locks one, so no lock is shared by the whole fleet.
const SHARDS: usize = 16;

/// One device's keys, behind its own lock.
#[derive(Clone, Default)]
struct Entry {
    join_key: Option<AesKey>,
    session: Option<Session>,
}

type Shard = RwLock<HashMap<DevEui, Mutex<Entry>>>;

/// An in-memory [`KeyStore`]: join keys and sessions by DevEUI, shared by a worker pool.
///
/// Every method takes `&self`: put the store in an [`Arc`] and hand a clone to each
/// worker, with no lock around it. Devices are spread over shards, each device has its
/// own lock, and a look-up, a [`record`](Self::record) or a
/// [`next_fcnt_down`](Self::next_fcnt_down) takes one shard's read lock and that
/// device's lock only; only adding a device write-locks (one shard).
///
/// ```
/// use std::sync::Arc;
/// use ran_routing::mic::{AesKey, KeyStore, Keys, Session};
/// use ran_routing::DevEui;
///
/// let keys = Arc::new(Keys::new());
/// let dev_eui = DevEui::new(1);
/// keys.set_session(dev_eui, Session::new(AesKey::new([1; 16])));
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let keys = Arc::clone(&keys);
///         std::thread::spawn(move || {
///             (0..100).map(|_| keys.next_fcnt_down(dev_eui).unwrap().1).collect::<Vec<_>>()
///         })
///     })
///     .collect();
/// let mut counters: Vec<u32> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
/// counters.sort();
/// // 400 downlinks, 400 distinct counters.
/// assert_eq!(counters, (0..400).collect::<Vec<_>>());
/// assert_eq!(keys.session(dev_eui).unwrap().fcnt_down, Some(399));
/// ```
///
/// Its `Debug` lists devices with their keys redacted.
pub struct Keys {
    shards: Box<[Shard]>,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Keys {
    /// A snapshot: an independent store with the same devices.
    fn clone(&self) -> Self {
        let copy = Self::new();
        for (from, to) in self.shards.iter().zip(copy.shards.iter()) {
            let from = read(from);
            let mut to = to.write().unwrap_or_else(|e| e.into_inner());
            for (dev_eui, entry) in from.iter() {
                to.insert(*dev_eui, Mutex::new(lock(entry).clone()));
            }
        }
        copy
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for shard in self.shards.iter() {
            for (dev_eui, entry) in read(shard).iter() {
                let entry = lock(entry);
                map.entry(dev_eui, &(entry.join_key.as_ref(), entry.session.as_ref()));
            }
        }
        map.finish()
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, HashMap<DevEui, Mutex<Entry>>> {
    shard.read().unwrap_or_else(|e| e.into_inner())
}

impl Keys {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self, dev_eui: DevEui) -> &Shard {
        // Fibonacci hashing: the top bits of the product depend on every bit of the EUI,
        // so sequential EUIs spread over all shards.
        let h = dev_eui.get().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    /// Runs `f` on the device's entry under its own lock, if the device is known.
    fn with<R>(&self, dev_eui: DevEui, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let shard = read(self.shard(dev_eui));
        let entry = shard.get(&dev_eui)?;
        let mut entry = lock(entry);
        Some(f(&mut entry))
    }

    /// Runs `f` on the device's entry, adding an empty one first if the device is new.
    fn upsert<R>(&self, dev_eui: DevEui, f: impl FnOnce(&mut Entry) -> R) -> R {
        // The common case, a known device, takes only the read lock.
        {
            let shard = read(self.shard(dev_eui));
            if let Some(entry) = shard.get(&dev_eui) {
                return f(&mut lock(entry));
            }
        }
        let mut shard = self
            .shard(dev_eui)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let entry = shard.entry(dev_eui).or_default();
        f(entry.get_mut().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets the device's join key (AppKey), returning the one it replaces.
    pub fn set_join_key(&self, dev_eui: DevEui, key: AesKey) -> Option<AesKey> {
        self.upsert(dev_eui, |e| e.join_key.replace(key))
    }

    /// Sets the device's session, returning the one it replaces: after a join, the new
    /// session starts both counters afresh.
    pub fn set_session(&self, dev_eui: DevEui, session: Session) -> Option<Session> {
        self.upsert(dev_eui, |e| e.session.replace(session))
    }

    /// Forgets everything about the device.
    pub fn remove(&self, dev_eui: DevEui) {
        self.shard(dev_eui)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&dev_eui);
    }

    /// Advances the session's uplink counter after a solved data uplink, so the next
    /// uplink's high counter bits are found first time. It never moves the counter back
    /// (a retransmission or replay solves to an older counter). Join requests change
    /// nothing: the session starts with the join accept the LNS sends.
    pub fn record(&self, solved: &Solved) {
        if let Some(fcnt) = solved.fcnt {
            self.with(solved.dev_eui, |e| {
                if let Some(session) = &mut e.session {
                    session.fcnt_up = Some(session.fcnt_up.map_or(fcnt, |last| last.max(fcnt)));
                }
            });
        }
    }

    /// Takes the device's next downlink counter: the session (its keys, to sign the
    /// downlink with) and the FCntDown to send, which is used up at once, so two workers
    /// never sign two downlinks with one counter (a device drops the second).
    ///
    /// `None` when the device has no session, or its session has used all 2^32 downlink
    /// counters: the device must join again (a new session restarts at 0).
    pub fn next_fcnt_down(&self, dev_eui: DevEui) -> Option<(Session, u32)> {
        self.with(dev_eui, |e| {
            let session = e.session.as_mut()?;
            let next = session
                .fcnt_down
                .map_or(Some(0), |last| last.checked_add(1))?;
            session.fcnt_down = Some(next);
            Some((session.clone(), next))
        })
        .flatten()
    }
}

impl KeyStore for Keys {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        self.with(dev_eui, |e| e.join_key.clone()).flatten()
    }
    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        self.with(dev_eui, |e| e.session.clone()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DevAddr;
    use crate::mic::FrameKind;

    #[test]
    fn record_only_moves_forward() {
        let dev_eui = DevEui::new(1);
        let keys = Keys::new();
        keys.set_session(dev_eui, Session::new(AesKey::new([1; 16])));
        let solved = |fcnt| Solved {
            dev_eui,
            mic: 0,
            fcnt: Some(fcnt),
            frame: FrameKind::UnconfirmedData {
                dev_addr: DevAddr::new(1),
                fport: None,
            },
        };
        keys.record(&solved(7));
        keys.record(&solved(5));
        assert_eq!(keys.session(dev_eui).unwrap().fcnt_up, Some(7));
        keys.remove(dev_eui);
        keys.record(&solved(9));
        assert_eq!(keys.session(dev_eui), None);
    }

    #[test]
    fn downlink_counters_run_out_instead_of_wrapping() {
        let dev_eui = DevEui::new(2);
        let keys = Keys::new();
        assert!(keys.next_fcnt_down(dev_eui).is_none());
        keys.set_join_key(dev_eui, AesKey::new([2; 16]));
        assert!(keys.next_fcnt_down(dev_eui).is_none(), "no session yet");
        keys.set_session(
            dev_eui,
            Session::new(AesKey::new([1; 16])).with_fcnt_down(u32::MAX - 1),
        );
        assert_eq!(keys.next_fcnt_down(dev_eui).map(|n| n.1), Some(u32::MAX));
        assert!(keys.next_fcnt_down(dev_eui).is_none());
        // The join key survived the session change; a clone is a snapshot.
        let copy = keys.clone();
        keys.remove(dev_eui);
        assert!(copy.join_key(dev_eui).is_some());
        assert!(keys.join_key(dev_eui).is_none());
        assert!(!format!("{copy:?}").contains("0101"));
    }
}
