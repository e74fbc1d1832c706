//! The access token never shows: not in `Debug`, not in errors, not in the log (this
//! crate's and ureq's, up to DEBUG; ureq documents TRACE as an unredacted wire dump).

mod common;

use std::sync::Mutex;

use ran_routing::{Core, DevAddr, DevEui, DeviceUpdate, JoinEui, NewDevice, Select};

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn the_token_never_shows() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Debug);

    let emu = ran_routing::emulator::Emulator::builder()
        .token("the-real-secret-token")
        .start()
        .unwrap();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    table
        .insert(NewDevice::new(DevEui::new(1), JoinEui::new(2)))
        .unwrap();
    let mut shown = vec![format!("{ran:?}")];
    for err in [
        table
            .insert(NewDevice::new(DevEui::new(1), DevAddr::new(2)))
            .unwrap_err(),
        table
            .update(
                DeviceUpdate::new(DevEui::new(1), JoinEui::new(3))
                    .with_active_dev_addr(DevAddr::new(1)),
            )
            .unwrap_err(),
    ] {
        shown.push(format!("{err}"));
        shown.push(format!("{err:?}"));
    }

    let wrong = Core::builder("a-wrong-secret-token")
        .base_url(&emu.base_url())
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    let err = wrong.routing_table().select(Select::all()).unwrap_err();
    shown.extend([format!("{err}"), format!("{err:?}"), format!("{wrong:?}")]);
    ran.close();
    drop(emu);

    let logged = LOG.0.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.contains("devices/select")),
        "the calls are logged: {logged:#?}"
    );
    for text in shown.iter().chain(&logged) {
        for secret in ["the-real-secret-token", "a-wrong-secret-token"] {
            assert!(!text.contains(secret), "{secret:?} in {text:?}");
        }
    }
}
