//! Transmission windows from real time: GPS time, class B slots and class C deadlines.
//!
//! A class B downlink names its ping slots as GPS time in milliseconds (`TMMS`); a class
//! C downlink names the time by which to transmit (`Deadline`). This module turns
//! [`SystemTime`] instants into both, so an LNS never carries its own leap-second table:
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use ran_routing::timing::{gps_time, system_time_from_gps};
//! use ran_routing::{DownstreamRadio, LoRaModulation, TransmissionWindow, TxTiming};
//!
//! // GPS week 2048 began on 2019-04-06T23:59:42 UTC (GPS was 18 s ahead of UTC).
//! let rollover = UNIX_EPOCH + Duration::from_secs(1_554_595_182);
//! assert_eq!(gps_time(rollover)?, Duration::from_secs(2048 * 7 * 86_400));
//! assert_eq!(system_time_from_gps(Duration::from_secs(2048 * 7 * 86_400)), rollover);
//!
//! // Class B: two ping slots, as GPS milliseconds.
//! let radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000));
//! let slots = [rollover, rollover + Duration::from_millis(1_500)];
//! let window = TransmissionWindow::class_b_at(radio.clone(), slots)?;
//! assert_eq!(window.timing, TxTiming::Tmms(vec![1_238_630_400_000, 1_238_630_401_500]));
//!
//! // Class C: transmit within the next 10 seconds.
//! let deadline = SystemTime::now() + Duration::from_secs(10);
//! let window = TransmissionWindow::class_c_by(radio, deadline)?;
//! assert!(matches!(window.timing, TxTiming::Deadline(_)));
//! # Ok::<(), ran_routing::InvalidInput>(())
//! ```
//!
//! ## GPS time and leap seconds
//!
//! GPS time counts SI seconds since the GPS epoch, 1980-01-06T00:00:00 UTC, without leap
//! seconds; UTC has inserted 18 since, so GPS time has been 18 s ahead of UTC since
//! 2017-01-01. [`SystemTime`] is Unix time, which counts no leap seconds either but
//! follows UTC: every UTC day is 86 400 Unix seconds long, so [`gps_time`] adds the leap
//! seconds inserted between the GPS epoch and the instant.
//!
//! An inserted leap second (23:59:60 UTC) has no Unix time of its own: Unix time
//! `T - 1` is 23:59:59 and `T` is the next 00:00:00, and each takes the GPS-UTC offset
//! in force at that UTC second. So GPS time jumps by 2 s from Unix `T - 1` to `T`, and
//! the GPS second in between is the leap second. [`system_time_from_gps`] maps every
//! GPS instant inside a leap second to `T`, the end of the leap second, as a clock
//! that stands still through it would: the inverse never goes backwards (a later GPS time
//! never gives an earlier `SystemTime`), and every other GPS instant round-trips
//! exactly, to the nanosecond. A system clock that smears a leap second over hours
//! instead (some cloud providers do) is off by up to a second around it, and GPS time
//! computed from it too.
//!
//! ## The leap-second table
//!
//! The table is a constant in this module, one entry per leap second since the GPS
//! epoch: the Unix time of the 00:00:00 UTC that follows the inserted second, and GPS-UTC
//! from then on. Its source is the IERS `leap-seconds.list`
//! (<https://hpiers.obspm.fr/iers/bul/bulc/ntp/leap-seconds.list>, also shipped in tzdata as
//! `leap-seconds.list`) in its edition of 2025-07-07 (IERS Bulletin C of July 2025): no
//! leap second since 2017-01-01, and none before that edition's expiry on 2026-06-28.
//! Leap seconds are announced in Bulletin C
//! (<https://hpiers.obspm.fr/iers/bul/bulc/bulletinc.dat>) about six months ahead. To
//! add one:
//!
//! 1. take the new line of `leap-seconds.list`: an NTP timestamp `X` (seconds since
//!    1900) and `DTAI` (TAI-UTC);
//! 2. append `leap(X - 2_208_988_800, DTAI - 19)` to `LEAP_SECONDS` (the Unix time of
//!    the new 00:00:00 UTC, and GPS-UTC: TAI is 19 s ahead of GPS) and grow the array's
//!    length by one;
//! 3. add its row to `EVERY_LEAP_SECOND` in the tests (the GPS second before, at and
//!    after it, computed independently).
//!
//! The table carries the expiry date of the edition it comes from
//! ([`leap_seconds_expiry`]): a leap second may be announced for any date after it. The
//! first time [`gps_time`] converts an instant past it, it logs a warning (once per
//! process) that the table may be out of date. To renew it: take the current
//! `leap-seconds.list`, add any new leap second as above, set `LEAP_SECONDS_EXPIRY_UNIX`
//! to the Unix time of its `#@` line (an NTP timestamp minus 2 208 988 800), and name its
//! edition in this paragraph's source line above.
//!
//! A compile-time check refuses a table whose dates do not increase or whose offset
//! does not grow by exactly one per entry; a negative leap second (never yet decided)
//! would need the inverse's gap handling changed first.
//!
//! ## The class C `Deadline` unit
//!
//! Unix time in whole seconds, with `1` for "as soon as possible": the reading, and
//! where it comes from, is documented once, on [`TxTiming::Deadline`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::InvalidInput;
use crate::model::{DownstreamRadio, DownstreamResult, DownstreamResultCode};
use crate::model::{TransmissionWindow, TxTiming};

/// The expiry of the `leap-seconds.list` edition the table comes from: 2026-06-28T00:00:00
/// UTC, in Unix seconds. No leap second is inserted before it.
const LEAP_SECONDS_EXPIRY_UNIX: u64 = 1_782_604_800;

/// Set once the expiry warning was logged: it is logged once per process.
static EXPIRY_WARNED: AtomicBool = AtomicBool::new(false);

/// When the leap-second table expires: the IERS guarantees no leap second before this
/// instant (2026-06-28T00:00:00 UTC for the table this version carries). Past it, GPS
/// time from [`gps_time`] may be a second off if a leap second was inserted since;
/// [`gps_time`] logs a warning the first time, and the module documentation says how to
/// update the table.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let expiry = ran_routing::timing::leap_seconds_expiry();
/// assert_eq!(expiry, UNIX_EPOCH + Duration::from_secs(1_782_604_800));
/// ```
pub fn leap_seconds_expiry() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LEAP_SECONDS_EXPIRY_UNIX)
}

/// Logs, once per process, that GPS time is being computed past the table's expiry.
/// Returns whether this call logged it.
fn warn_if_expired(unix_secs: u64) -> bool {
    if unix_secs < LEAP_SECONDS_EXPIRY_UNIX || EXPIRY_WARNED.swap(true, Ordering::Relaxed) {
        return false;
    }
    log::warn!(
        "ran_routing::timing: the leap-second table expired on 2026-06-28 (IERS \
         leap-seconds.list of 2025-07-07): GPS times past it are a second off if a leap \
         second has been inserted since; update the crate, or the table as its \
         documentation describes"
    );
    true
}

/// The GPS epoch, 1980-01-06T00:00:00 UTC, in Unix seconds.
const GPS_EPOCH_UNIX_SECS: u64 = 315_964_800;

/// One inserted leap second.
struct LeapSecond {
    /// Unix time of the 00:00:00 UTC right after the inserted 23:59:60.
    unix_secs: u64,
    /// GPS-UTC in seconds from then on (TAI-UTC minus 19).
    gps_minus_utc: u64,
}

/// Every leap second since the GPS epoch, from the IERS `leap-seconds.list` (see the
/// module documentation for how to extend it).
const LEAP_SECONDS: [LeapSecond; 18] = [
    leap(362_793_600, 1),    // 1981-07-01, TAI-UTC 20
    leap(394_329_600, 2),    // 1982-07-01
    leap(425_865_600, 3),    // 1983-07-01
    leap(489_024_000, 4),    // 1985-07-01
    leap(567_993_600, 5),    // 1988-01-01
    leap(631_152_000, 6),    // 1990-01-01
    leap(662_688_000, 7),    // 1991-01-01
    leap(709_948_800, 8),    // 1992-07-01
    leap(741_484_800, 9),    // 1993-07-01
    leap(773_020_800, 10),   // 1994-07-01
    leap(820_454_400, 11),   // 1996-01-01
    leap(867_715_200, 12),   // 1997-07-01
    leap(915_148_800, 13),   // 1999-01-01
    leap(1_136_073_600, 14), // 2006-01-01
    leap(1_230_768_000, 15), // 2009-01-01
    leap(1_341_100_800, 16), // 2012-07-01
    leap(1_435_708_800, 17), // 2015-07-01
    leap(1_483_228_800, 18), // 2017-01-01, TAI-UTC 37
];

const fn leap(unix_secs: u64, gps_minus_utc: u64) -> LeapSecond {
    LeapSecond {
        unix_secs,
        gps_minus_utc,
    }
}

// A table extended by hand must stay sorted, start after the epoch, and add one second
// per entry: the inverse relies on each gap being exactly one GPS second wide.
const _: () = {
    let mut i = 0;
    let (mut last_unix, mut last_offset) = (GPS_EPOCH_UNIX_SECS, 0);
    while i < LEAP_SECONDS.len() {
        assert!(LEAP_SECONDS[i].unix_secs > last_unix);
        assert!(LEAP_SECONDS[i].unix_secs.is_multiple_of(86_400));
        assert!(LEAP_SECONDS[i].gps_minus_utc == last_offset + 1);
        last_unix = LEAP_SECONDS[i].unix_secs;
        last_offset = LEAP_SECONDS[i].gps_minus_utc;
        i += 1;
    }
};

/// GPS-UTC, in seconds, during the Unix second `unix_secs`.
fn gps_minus_utc(unix_secs: u64) -> u64 {
    LEAP_SECONDS
        .iter()
        .rev()
        .find(|ls| ls.unix_secs <= unix_secs)
        .map_or(0, |ls| ls.gps_minus_utc)
}

/// The time since the GPS epoch (1980-01-06T00:00:00 UTC) at the instant `time`, leap
/// seconds included: GPS time, to the nanosecond.
///
/// Fails with [`InvalidInput::OutsideGpsTime`] for an instant before the GPS epoch. See
/// the [module documentation](self) for how leap seconds are handled.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use ran_routing::timing::gps_time;
///
/// // J2000.0, 2000-01-01T12:00:00 UTC: 13 leap seconds after the GPS epoch.
/// let j2000 = UNIX_EPOCH + Duration::from_secs(946_728_000);
/// assert_eq!(gps_time(j2000)?, Duration::from_secs(630_763_213));
/// assert!(gps_time(UNIX_EPOCH).is_err());
/// # Ok::<(), ran_routing::InvalidInput>(())
/// ```
pub fn gps_time(time: SystemTime) -> Result<Duration, InvalidInput> {
    let unix = time
        .duration_since(UNIX_EPOCH)
        .map_err(|before| outside_gps_time_before_1970(before.duration()))?;
    if unix.as_secs() < GPS_EPOCH_UNIX_SECS {
        return Err(outside_gps_time(unix));
    }
    warn_if_expired(unix.as_secs());
    let since_epoch = unix - Duration::from_secs(GPS_EPOCH_UNIX_SECS);
    Ok(since_epoch.saturating_add(Duration::from_secs(gps_minus_utc(unix.as_secs()))))
}

/// The instant at GPS time `gps` (time since 1980-01-06T00:00:00 UTC, leap seconds
/// included): the inverse of [`gps_time`].
///
/// `system_time_from_gps(gps_time(t)?) == t` for every `t` from the GPS epoch on, and
/// `gps_time(system_time_from_gps(g)) == Ok(g)` for every `g` outside a leap second. A
/// GPS instant inside an inserted leap second (23:59:60.x UTC), which Unix time cannot
/// express, gives the end of that leap second: the following 00:00:00 UTC. So the
/// result never goes backwards as `gps` grows.
///
/// # Panics
///
/// Like `SystemTime + Duration`, if the instant is beyond what [`SystemTime`] holds
/// (hundreds of billions of years on Unix).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use ran_routing::timing::system_time_from_gps;
///
/// // The last leap second so far: 2016-12-31T23:59:60 UTC is GPS second 1_167_264_017.
/// let midnight = UNIX_EPOCH + Duration::from_secs(1_483_228_800);
/// assert_eq!(system_time_from_gps(Duration::from_secs(1_167_264_018)), midnight);
/// assert_eq!(system_time_from_gps(Duration::from_millis(1_167_264_017_500)), midnight);
/// assert_eq!(
///     system_time_from_gps(Duration::from_secs(1_167_264_016)),
///     midnight - Duration::from_secs(1)
/// );
/// ```
pub fn system_time_from_gps(gps: Duration) -> SystemTime {
    let secs = gps.as_secs();
    let mut gps_minus_utc = 0;
    for ls in LEAP_SECONDS.iter().rev() {
        // The GPS second at which this leap second's 00:00:00 UTC starts; the one before
        // it is the inserted 23:59:60.
        let starts = ls.unix_secs - GPS_EPOCH_UNIX_SECS + ls.gps_minus_utc;
        if secs >= starts {
            gps_minus_utc = ls.gps_minus_utc;
            break;
        }
        if secs == starts - 1 {
            return UNIX_EPOCH + Duration::from_secs(ls.unix_secs);
        }
    }
    gps.checked_add(Duration::from_secs(GPS_EPOCH_UNIX_SECS - gps_minus_utc))
        .and_then(|since_unix_epoch| UNIX_EPOCH.checked_add(since_unix_epoch))
        .expect("GPS time beyond what SystemTime can hold")
}

fn outside_gps_time(unix: Duration) -> InvalidInput {
    InvalidInput::OutsideGpsTime {
        unix_secs: i64::try_from(unix.as_secs()).unwrap_or(i64::MAX),
    }
}

fn outside_gps_time_before_1970(before: Duration) -> InvalidInput {
    // Whole seconds rounded down, so 0.5 s before 1970 is second -1.
    let secs = before.as_secs() + u64::from(before.subsec_nanos() > 0);
    InvalidInput::OutsideGpsTime {
        unix_secs: i64::try_from(secs).map_or(i64::MIN, |s| -s),
    }
}

/// The GPS time of `time` in whole milliseconds (rounded down), a class B `TMMS` slot.
fn gps_millis(time: SystemTime) -> Result<u64, InvalidInput> {
    let gps = gps_time(time)?;
    u64::try_from(gps.as_millis())
        .map_err(|_| outside_gps_time(time.duration_since(UNIX_EPOCH).unwrap_or_default()))
}

impl TransmissionWindow {
    /// A class B window in the ping slots starting at `times`, as the wire's `TMMS`: GPS
    /// time in whole milliseconds (rounded down), in the order given.
    ///
    /// Checked before anything is sent: 1 to [`TxTiming::MAX_TMMS_SLOTS`] instants
    /// ([`InvalidInput::TmmsSlots`]), none before the GPS epoch
    /// ([`InvalidInput::OutsideGpsTime`]), and the radio's own rules.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use ran_routing::{DownstreamRadio, InvalidInput, LoRaModulation, TransmissionWindow};
    ///
    /// let radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000));
    /// let slot = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    /// assert!(TransmissionWindow::class_b_at(radio.clone(), [slot]).is_ok());
    /// assert_eq!(
    ///     TransmissionWindow::class_b_at(radio, []),
    ///     Err(InvalidInput::TmmsSlots(0))
    /// );
    /// ```
    pub fn class_b_at(
        radio: DownstreamRadio,
        times: impl IntoIterator<Item = SystemTime>,
    ) -> Result<TransmissionWindow, InvalidInput> {
        let mut times = times.into_iter();
        let mut slots = Vec::with_capacity(TxTiming::MAX_TMMS_SLOTS);
        for time in times.by_ref().take(TxTiming::MAX_TMMS_SLOTS) {
            slots.push(gps_millis(time)?);
        }
        let more = times.count();
        if more > 0 {
            return Err(InvalidInput::TmmsSlots(slots.len() + more));
        }
        let window = Self::class_b(radio, slots);
        window.validate()?;
        Ok(window)
    }

    /// A class C window: transmit by `deadline`, sent as the wire's `Deadline` in whole
    /// Unix seconds, rounded down so the RAN's deadline is never later than the one
    /// asked for (see the [module documentation](self) for the unit).
    ///
    /// Checked before anything is sent: not before the current second of the system
    /// clock (a deadline already past cannot be met) and at most
    /// [`TxTiming::MAX_DEADLINE_AHEAD_SECS`] ahead of it ([`InvalidInput::Deadline`]),
    /// and the radio's own rules.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Deadline`] for a deadline outside that range: for "as soon as
    /// possible" use [`TransmissionWindow::class_c_asap`] instead.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use ran_routing::{DownstreamRadio, InvalidInput, LoRaModulation, TransmissionWindow};
    ///
    /// let radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(12, 125_000));
    /// let soon = SystemTime::now() + Duration::from_secs(30);
    /// assert!(TransmissionWindow::class_c_by(radio.clone(), soon).is_ok());
    /// let too_far = SystemTime::now() + Duration::from_secs(600);
    /// assert!(matches!(
    ///     TransmissionWindow::class_c_by(radio, too_far),
    ///     Err(InvalidInput::Deadline { .. })
    /// ));
    /// ```
    pub fn class_c_by(
        radio: DownstreamRadio,
        deadline: SystemTime,
    ) -> Result<TransmissionWindow, InvalidInput> {
        // Before 1970 becomes 0, which validation refuses as the wire's "not positive".
        let secs = deadline
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if secs < now {
            return Err(InvalidInput::Deadline {
                deadline: secs,
                now,
            });
        }
        let window = Self::class_c(radio, secs);
        window.validate()?;
        Ok(window)
    }
}

impl DownstreamResult {
    /// Whether the RAN refused the downlink as sent too early.
    ///
    /// The RAN has no result code for it and says so only in the result message: this is
    /// the one place that knows. As the TTS bridge does (`everynet/ran.routing.tts`,
    /// `src/lib/traffic/ran.py`, `_handle_downstream_result_message`: `"TOO_EARLY" in
    /// downstream_message.result_message`), it is a case-sensitive search for
    /// `TOO_EARLY` in the message of a result that is neither `Success` nor `TooLate`
    /// (those codes win over the text).
    ///
    /// ```
    /// use ran_routing::{DownstreamResult, DownstreamResultCode};
    ///
    /// let result: DownstreamResult = serde_json::from_str(
    ///     r#"{"TransactionID": 7, "ResultCode": "WindowNotFound",
    ///         "ResultMessage": "downlink TOO_EARLY for the gateway"}"#,
    /// )?;
    /// assert!(result.is_too_early());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn is_too_early(&self) -> bool {
        !matches!(
            self.result_code,
            DownstreamResultCode::Success | DownstreamResultCode::TooLate
        ) && self
            .result_message
            .as_deref()
            .is_some_and(|message| message.contains("TOO_EARLY"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LoRaModulation;

    fn unix(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn gps_secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// For each of the 18 leap seconds: the Unix second `T` of the 00:00:00 UTC after it,
    /// and the GPS second at Unix `T - 1` (23:59:59), `T` and `T + 1`.
    ///
    /// Computed independently with the TTS bridge's converter (`src/lib/gps_time.py` of
    /// everynet/ran.routing.tts at 9bdfe7a8, `utc_to_gps`), reading the leap seconds of
    /// Debian tzdata 2025b (`/usr/share/zoneinfo/right/UTC`), in a throwaway script.
    const EVERY_LEAP_SECOND: [(u64, u64, u64, u64); 18] = [
        (362793600, 46828799, 46828801, 46828802),     // 1981-07-01
        (394329600, 78364800, 78364802, 78364803),     // 1982-07-01
        (425865600, 109900801, 109900803, 109900804),  // 1983-07-01
        (489024000, 173059202, 173059204, 173059205),  // 1985-07-01
        (567993600, 252028803, 252028805, 252028806),  // 1988-01-01
        (631152000, 315187204, 315187206, 315187207),  // 1990-01-01
        (662688000, 346723205, 346723207, 346723208),  // 1991-01-01
        (709948800, 393984006, 393984008, 393984009),  // 1992-07-01
        (741484800, 425520007, 425520009, 425520010),  // 1993-07-01
        (773020800, 457056008, 457056010, 457056011),  // 1994-07-01
        (820454400, 504489609, 504489611, 504489612),  // 1996-01-01
        (867715200, 551750410, 551750412, 551750413),  // 1997-07-01
        (915148800, 599184011, 599184013, 599184014),  // 1999-01-01
        (1136073600, 820108812, 820108814, 820108815), // 2006-01-01
        (1230768000, 914803213, 914803215, 914803216), // 2009-01-01
        (1341100800, 1025136014, 1025136016, 1025136017), // 2012-07-01
        (1435708800, 1119744015, 1119744017, 1119744018), // 2015-07-01
        (1483228800, 1167264016, 1167264018, 1167264019), // 2017-01-01
    ];

    #[test]
    fn every_leap_second() {
        for (t, before, at, after) in EVERY_LEAP_SECOND {
            assert_eq!(gps_time(unix(t - 1)), Ok(gps_secs(before)), "T-1 of {t}");
            assert_eq!(gps_time(unix(t)), Ok(gps_secs(at)), "T of {t}");
            assert_eq!(gps_time(unix(t + 1)), Ok(gps_secs(after)), "T+1 of {t}");
            // The last nanosecond of 23:59:59 still has the old offset.
            assert_eq!(
                gps_time(unix(t) - Duration::from_nanos(1)),
                Ok(gps_secs(at - 1) - Duration::from_nanos(1)),
            );
            for u in [t - 1, t, t + 1] {
                assert_eq!(system_time_from_gps(gps_time(unix(u)).unwrap()), unix(u));
            }
            // The inserted second, GPS `at - 1`, ends at T: start, middle and last
            // nanosecond all map there.
            for inside in [0, 500_000_000, 999_999_999] {
                let gps = gps_secs(at - 1) + Duration::from_nanos(inside);
                assert_eq!(system_time_from_gps(gps), unix(t), "leap second {t}");
            }
            assert_eq!(
                system_time_from_gps(gps_secs(at - 1) - Duration::from_nanos(1)),
                unix(t) - Duration::from_nanos(1)
            );
        }
        assert_eq!(EVERY_LEAP_SECOND.len(), LEAP_SECONDS.len());
    }

    /// Published fixed points.
    #[test]
    fn known_gps_times() {
        for (unix_secs, gps) in [
            // The epoch itself.
            (315_964_800, 0),
            // GPS week rollover 1024: 1999-08-21T23:59:47 UTC, GPS-UTC 13 s.
            (935_279_987, 1024 * 604_800),
            // GPS week rollover 2048: 2019-04-06T23:59:42 UTC, GPS-UTC 18 s.
            (1_554_595_182, 2048 * 604_800),
            // J2000.0, 2000-01-01T12:00:00 UTC: GPS 630763213 s.
            (946_728_000, 630_763_213),
            // 2038-01-19T03:14:08 UTC (the i32 Unix overflow), by the TTS converter.
            (2_147_483_648, 1_831_518_866),
        ] {
            assert_eq!(gps_time(unix(unix_secs)), Ok(gps_secs(gps)), "{unix_secs}");
            assert_eq!(system_time_from_gps(gps_secs(gps)), unix(unix_secs));
        }
        // 2026-11-30T06:00:00.123456 UTC, by the TTS converter: sub-seconds carry over.
        let t = unix(1_796_018_400) + Duration::from_micros(123_456);
        let gps = gps_secs(1_480_053_618) + Duration::from_micros(123_456);
        assert_eq!(gps_time(t), Ok(gps));
        assert_eq!(system_time_from_gps(gps), t);
    }

    #[test]
    fn before_the_epoch_is_an_error() {
        let epoch = unix(GPS_EPOCH_UNIX_SECS);
        assert_eq!(gps_time(epoch), Ok(Duration::ZERO));
        assert_eq!(
            gps_time(epoch - Duration::from_nanos(1)),
            Err(InvalidInput::OutsideGpsTime {
                unix_secs: 315_964_799
            })
        );
        assert_eq!(
            gps_time(UNIX_EPOCH),
            Err(InvalidInput::OutsideGpsTime { unix_secs: 0 })
        );
        assert_eq!(
            gps_time(UNIX_EPOCH - Duration::from_millis(500)),
            Err(InvalidInput::OutsideGpsTime { unix_secs: -1 })
        );
        assert_eq!(
            gps_time(UNIX_EPOCH - Duration::from_secs(86_400)),
            Err(InvalidInput::OutsideGpsTime { unix_secs: -86_400 })
        );
        let err = gps_time(UNIX_EPOCH).unwrap_err().to_string();
        assert!(err.contains("1980-01-06"), "{err}");
    }

    #[test]
    fn round_trips_across_the_table() {
        // Every 997 003 s (about 11.5 days) plus an odd nanosecond count, epoch to 2040.
        let mut unix_secs = GPS_EPOCH_UNIX_SECS;
        let mut n = 0u32;
        while unix_secs < 2_208_988_800 {
            let t = unix(unix_secs) + Duration::from_nanos(u64::from(n % 1_000_000_000));
            let gps = gps_time(t).unwrap();
            assert_eq!(system_time_from_gps(gps), t);
            assert_eq!(gps_time(system_time_from_gps(gps)), Ok(gps));
            unix_secs += 997_003;
            n = n.wrapping_mul(31).wrapping_add(123_456_789);
        }
        // Before the first leap second, GPS time is Unix time minus the epoch.
        assert_eq!(
            system_time_from_gps(gps_secs(100)),
            unix(GPS_EPOCH_UNIX_SECS + 100)
        );
    }

    #[test]
    fn inverse_never_goes_backwards() {
        for (t, ..) in EVERY_LEAP_SECOND {
            let around = t - GPS_EPOCH_UNIX_SECS + gps_minus_utc(t);
            let mut last = UNIX_EPOCH;
            for ms in (around - 3) * 1000..(around + 3) * 1000 {
                let now = system_time_from_gps(Duration::from_millis(ms));
                assert!(now >= last, "GPS {ms} ms");
                last = now;
            }
        }
    }

    fn radio() -> DownstreamRadio {
        DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000))
    }

    #[test]
    fn class_b_slots_are_gps_milliseconds() {
        let slot = unix(1_554_595_182) + Duration::from_micros(1_999);
        let window =
            TransmissionWindow::class_b_at(radio(), [slot, slot + Duration::from_secs(128)])
                .unwrap();
        assert_eq!(window.radio, radio());
        // Sub-millisecond parts round down.
        assert_eq!(
            window.timing,
            TxTiming::Tmms(vec![1_238_630_400_001, 1_238_630_528_001])
        );
        let eight =
            TransmissionWindow::class_b_at(radio(), (0..8).map(|i| unix(2_000_000_000 + i)))
                .unwrap();
        assert!(matches!(eight.timing, TxTiming::Tmms(slots) if slots.len() == 8));
    }

    #[test]
    fn class_b_errors() {
        let at = |n: u64| (0..n).map(|i| unix(2_000_000_000 + i));
        assert_eq!(
            TransmissionWindow::class_b_at(radio(), at(0)),
            Err(InvalidInput::TmmsSlots(0))
        );
        assert_eq!(
            TransmissionWindow::class_b_at(radio(), at(9)),
            Err(InvalidInput::TmmsSlots(9))
        );
        assert_eq!(
            TransmissionWindow::class_b_at(radio(), at(100)),
            Err(InvalidInput::TmmsSlots(100))
        );
        assert_eq!(
            TransmissionWindow::class_b_at(radio(), [unix(2_000_000_000), unix(1_000)]),
            Err(InvalidInput::OutsideGpsTime { unix_secs: 1_000 })
        );
        let bad_radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(13, 125_000));
        assert_eq!(
            TransmissionWindow::class_b_at(bad_radio, at(1)),
            Err(InvalidInput::Spreading(13))
        );
        // Far beyond u64 milliseconds of GPS time, where the OS clock can go that far.
        if let Some(far) =
            UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 1000 + GPS_EPOCH_UNIX_SECS))
        {
            assert!(gps_time(far).is_ok());
            assert!(matches!(
                TransmissionWindow::class_b_at(radio(), [far]),
                Err(InvalidInput::OutsideGpsTime { .. })
            ));
        }
    }

    #[test]
    fn the_expiry_warning_is_logged_once_past_the_expiry() {
        assert!(!warn_if_expired(LEAP_SECONDS_EXPIRY_UNIX - 1));
        // Whichever test converted a time past the expiry first logged it; from here on
        // nothing more is logged.
        let _ = gps_time(unix(LEAP_SECONDS_EXPIRY_UNIX + 1));
        assert!(EXPIRY_WARNED.load(Ordering::Relaxed));
        assert!(!warn_if_expired(LEAP_SECONDS_EXPIRY_UNIX + 2));
        // The last entry of the table is before the expiry, as its source says.
        assert!(LEAP_SECONDS[LEAP_SECONDS.len() - 1].unix_secs < LEAP_SECONDS_EXPIRY_UNIX);
    }

    #[test]
    fn class_c_deadline_is_unix_seconds() {
        let deadline = SystemTime::now() + Duration::from_millis(100_900);
        let window = TransmissionWindow::class_c_by(radio(), deadline).unwrap();
        let expected = deadline.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(window.timing, TxTiming::Deadline(expected));
        // A deadline already past cannot be met: "as soon as possible" has its own
        // constructor, and Unix second 1 is not a way to spell it.
        for past in [unix(1), SystemTime::now() - Duration::from_secs(2)] {
            assert!(matches!(
                TransmissionWindow::class_c_by(radio(), past),
                Err(InvalidInput::Deadline { .. })
            ));
        }
        let asap = TransmissionWindow::class_c_asap(radio());
        assert_eq!(asap.timing, TxTiming::Deadline(TxTiming::DEADLINE_ASAP));
        assert!(asap.validate().is_ok());
    }

    #[test]
    fn class_c_errors() {
        let too_far =
            SystemTime::now() + Duration::from_secs(TxTiming::MAX_DEADLINE_AHEAD_SECS + 5);
        assert!(matches!(
            TransmissionWindow::class_c_by(radio(), too_far),
            Err(InvalidInput::Deadline { .. })
        ));
        for zero in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(999),
            UNIX_EPOCH - Duration::from_secs(5),
        ] {
            assert!(matches!(
                TransmissionWindow::class_c_by(radio(), zero),
                Err(InvalidInput::Deadline { deadline: 0, .. })
            ));
        }
        let bad_radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(13, 125_000));
        assert_eq!(
            TransmissionWindow::class_c_by(bad_radio, SystemTime::now()),
            Err(InvalidInput::Spreading(13))
        );
    }

    fn result(code: DownstreamResultCode, message: Option<&str>) -> DownstreamResult {
        DownstreamResult {
            protocol_version: 1,
            transaction_id: 1,
            result_code: code,
            result_message: message.map(str::to_owned),
            mailbox_id: None,
        }
    }

    #[test]
    fn too_early_is_read_from_the_message() {
        use DownstreamResultCode as Code;
        let early = Some("scheduling failed: TOO_EARLY");
        assert!(result(Code::WindowNotFound, early).is_too_early());
        assert!(result(Code::GatewayError, Some("TOO_EARLY")).is_too_early());
        assert!(result(Code::Unknown("New".into()), early).is_too_early());
        // The codes that say otherwise win, as in the TTS bridge.
        assert!(!result(Code::Success, early).is_too_early());
        assert!(!result(Code::TooLate, early).is_too_early());
        // Case-sensitive, like the bridge's `in`.
        assert!(!result(Code::WindowNotFound, Some("too_early")).is_too_early());
        assert!(!result(Code::WindowNotFound, Some("TOO EARLY")).is_too_early());
        assert!(!result(Code::WindowNotFound, None).is_too_early());
        assert!(!result(Code::WindowNotFound, Some("")).is_too_early());
    }
}
