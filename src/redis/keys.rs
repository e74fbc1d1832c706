//! LoRaWAN sessions in Redis: a [`KeyStore`] whose counters several processes share.

use std::fmt;

use super::RedisStore;
use crate::error::Result;
use crate::ids::DevEui;
use crate::mic::{AesKey, KeyStore, Keys, Session, Solved};

/// One hash per device, `{prefix}dev:{DevEUI}`, with these fields. Keys are 16 raw bytes;
/// `fcnt_up` is the last accepted uplink counter; `fcnt_down` the number of downlink
/// counters handed out in the session (the next one to hand out).
const JOIN_KEY: &str = "join_key";
const NWK_S_KEY: &str = "nwk_s_key";
const APP_S_KEY: &str = "app_s_key";
const FCNT_UP: &str = "fcnt_up";
const FCNT_DOWN: &str = "fcnt_down";

/// Replaces the session fields of `KEYS[1]`, keeping its join key.
/// ARGV: nwk_s_key, app_s_key ('' for none), fcnt_up ('' for none), fcnt_down (next).
const SET_SESSION: &str = r"
redis.call('HDEL', KEYS[1], 'nwk_s_key', 'app_s_key', 'fcnt_up', 'fcnt_down')
redis.call('HSET', KEYS[1], 'nwk_s_key', ARGV[1], 'fcnt_down', ARGV[4])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'app_s_key', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'fcnt_up', ARGV[3]) end
return 1";

/// Raises `fcnt_up` of a device with a session to `ARGV[1]` unless it is higher: a
/// counter never goes back, whichever process records last.
const RECORD: &str = r"
if redis.call('HEXISTS', KEYS[1], 'nwk_s_key') == 0 then return -1 end
local current = tonumber(redis.call('HGET', KEYS[1], 'fcnt_up') or '-1')
local new = tonumber(ARGV[1])
if new > current then
  redis.call('HSET', KEYS[1], 'fcnt_up', ARGV[1])
  return new
end
return current";

/// Takes the next downlink counter of a device with a session, atomically, and returns
/// it with the session; nothing once all 2^32 counters are used.
const NEXT_FCNT_DOWN: &str = r"
if redis.call('HEXISTS', KEYS[1], 'nwk_s_key') == 0 then return false end
local next = tonumber(redis.call('HGET', KEYS[1], 'fcnt_down') or '0')
if next > 4294967295 then return false end
redis.call('HSET', KEYS[1], 'fcnt_down', next + 1)
local s = redis.call('HMGET', KEYS[1], 'nwk_s_key', 'app_s_key', 'fcnt_up')
return {s[1], s[2], s[3], tostring(next)}";

/// A [`KeyStore`] in Redis: join keys and sessions of devices, shared by every process
/// that opens the same store and prefix, with the session operations of [`Keys`].
///
/// Counters move atomically on the server: [`record`](Self::record) never moves an
/// uplink counter back, whichever process records last, and
/// [`next_fcnt_down`](Self::next_fcnt_down) never hands out one downlink counter twice,
/// in any process. So after FCnt 65 535 every process finds the counter's high bits, and
/// no device sees two downlinks with one FCntDown.
///
/// Look-ups go to Redis (one round trip each). What this handle read or wrote last is
/// also kept in memory: while Redis cannot be reached, the solver's look-ups fall back to
/// it (logged) so uplinks of known devices still solve; [`next_fcnt_down`](Self::next_fcnt_down) returns the
/// error instead, since a counter taken without Redis could be taken twice.
///
/// Keys at rest are as safe as the Redis that holds them (16 raw bytes per key in the
/// device's hash): protecting that Redis is the operator's concern, as for any LNS.
///
/// ```no_run
/// use ran_routing::mic::{AesKey, Session};
/// use ran_routing::redis::{RedisKeys, RedisStore};
/// use ran_routing::DevEui;
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/0")?;
/// let keys = RedisKeys::new(&store);
/// let dev_eui = DevEui::new(0x7abe1b8c93d7174f);
/// keys.set_session(dev_eui, Session::new(AesKey::new([1; 16])))?;
/// let (session, fcnt_down) = keys.next_fcnt_down(dev_eui)?.expect("a session");
/// assert_eq!(fcnt_down, 0);
/// # let _ = session;
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisKeys {
    store: RedisStore,
    /// What was last read or written, for look-ups while Redis is away.
    local: std::sync::Arc<Keys>,
}

impl RedisKeys {
    /// Sessions and join keys in `store`, under its prefix.
    pub fn new(store: &RedisStore) -> RedisKeys {
        RedisKeys {
            store: store.clone(),
            local: Default::default(),
        }
    }

    /// Sets the device's join key (AppKey).
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) when Redis fails; nothing was changed there.
    pub fn set_join_key(&self, dev_eui: DevEui, key: AesKey) -> Result<()> {
        let field = key.expose().to_vec();
        self.store.run(|con| {
            redis::cmd("HSET")
                .arg(self.device_key(dev_eui))
                .arg(JOIN_KEY)
                .arg(field)
                .query::<()>(con)
        })?;
        self.local.set_join_key(dev_eui, key);
        Ok(())
    }

    /// Sets the device's session (after a join accept, or an ABP device's), with the
    /// counters it carries: every process sees it at once.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) when Redis fails.
    pub fn set_session(&self, dev_eui: DevEui, session: Session) -> Result<()> {
        let script = redis::Script::new(SET_SESSION);
        let app = session
            .app_s_key
            .as_ref()
            .map_or(Vec::new(), |k| k.expose().to_vec());
        let fcnt_up = session.fcnt_up.map_or(String::new(), |f| f.to_string());
        let next_down = session.fcnt_down.map_or(0, |f| u64::from(f) + 1);
        self.store.run(|con| {
            script
                .key(self.device_key(dev_eui))
                .arg(session.nwk_s_key.expose().to_vec())
                .arg(app)
                .arg(fcnt_up)
                .arg(next_down)
                .invoke::<i64>(con)
        })?;
        self.local.set_session(dev_eui, session);
        Ok(())
    }

    /// Forgets the device: its join key and session.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) when Redis fails.
    pub fn remove(&self, dev_eui: DevEui) -> Result<()> {
        self.store.run(|con| {
            redis::cmd("DEL")
                .arg(self.device_key(dev_eui))
                .query::<()>(con)
        })?;
        self.local.remove(dev_eui);
        Ok(())
    }

    /// Advances the session's uplink counter after a solved data uplink, as
    /// [`Keys::record`] does, in Redis: it never moves back, whichever process records.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) when Redis fails (the memory copy is still
    /// advanced).
    pub fn record(&self, solved: &Solved) -> Result<()> {
        self.local.record(solved);
        let Some(fcnt) = solved.fcnt else {
            return Ok(());
        };
        let script = redis::Script::new(RECORD);
        self.store.run(|con| {
            script
                .key(self.device_key(solved.dev_eui))
                .arg(fcnt)
                .invoke::<i64>(con)
        })?;
        Ok(())
    }

    /// Takes the device's next downlink counter, as [`Keys::next_fcnt_down`] does, but
    /// atomically in Redis: two processes never get the same FCntDown.
    ///
    /// `Ok(None)` when the device has no session or has used all 2^32 counters.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store) when Redis fails: no counter is taken, since
    /// one taken without Redis could be taken twice. Retry once Redis is back.
    pub fn next_fcnt_down(&self, dev_eui: DevEui) -> Result<Option<(Session, u32)>> {
        let script = redis::Script::new(NEXT_FCNT_DOWN);
        type Row = Option<(Vec<u8>, Option<Vec<u8>>, Option<String>, String)>;
        let row: Row = self
            .store
            .run(|con| script.key(self.device_key(dev_eui)).invoke::<Row>(con))?;
        let Some((nwk, app, fcnt_up, next)) = row else {
            return Ok(None);
        };
        let (Some(nwk), Ok(next)) = (aes_key(&nwk), next.parse::<u32>()) else {
            log::warn!("RedisKeys: device {dev_eui} has a malformed session in Redis");
            return Ok(None);
        };
        let mut session = Session::new(nwk).with_fcnt_down(next);
        session.app_s_key = app.as_deref().and_then(aes_key);
        session.fcnt_up = fcnt_up.and_then(|f| f.parse().ok());
        Ok(Some((session, next)))
    }

    fn device_key(&self, dev_eui: DevEui) -> Vec<u8> {
        self.store.key(b"dev:", dev_eui.to_string().as_bytes())
    }

    fn fetch(&self, dev_eui: DevEui) -> Result<Fields> {
        self.store.run(|con| {
            redis::cmd("HMGET")
                .arg(self.device_key(dev_eui))
                .arg(&[JOIN_KEY, NWK_S_KEY, APP_S_KEY, FCNT_UP, FCNT_DOWN])
                .query::<Fields>(con)
        })
    }
}

type Fields = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

fn aes_key(bytes: &[u8]) -> Option<AesKey> {
    <[u8; 16]>::try_from(bytes).ok().map(AesKey::new)
}

impl KeyStore for RedisKeys {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        match self.fetch(dev_eui) {
            Ok((join, ..)) => {
                let key = join.as_deref().and_then(aes_key)?;
                self.local.set_join_key(dev_eui, key.clone());
                Some(key)
            }
            Err(e) => {
                log::warn!("RedisKeys: {e}; using the join key last seen here");
                self.local.join_key(dev_eui)
            }
        }
    }

    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        match self.fetch(dev_eui) {
            Ok((_, nwk, app, fcnt_up, fcnt_down)) => {
                let mut session = Session::new(aes_key(&nwk?)?);
                session.app_s_key = app.as_deref().and_then(aes_key);
                session.fcnt_up = fcnt_up.and_then(|f| f.parse().ok());
                session.fcnt_down = fcnt_down
                    .and_then(|f| f.parse::<u64>().ok())
                    .and_then(|next| next.checked_sub(1))
                    .and_then(|last| u32::try_from(last).ok());
                self.local.set_session(dev_eui, session.clone());
                Some(session)
            }
            Err(e) => {
                log::warn!("RedisKeys: {e}; using the session last seen here");
                self.local.session(dev_eui)
            }
        }
    }
}

impl fmt::Debug for RedisKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeys")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
