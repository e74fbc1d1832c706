//! The REST loop both REST benches run: N inserts, N single-device selects, one select
//! of the whole table; through `Core` (ours) or by hand on a bare ureq agent (baseline).

use ran_routing::{Core, DevEui, JoinEui, NewDevice, Select};
use ran_routing_emulator::Emulator;

const JOIN_EUI: u64 = 0x3ced_cf62_4f8b_68f4;

fn dev_eui(i: usize) -> u64 {
    0x7abe_1b8c_0000_0000 | i as u64
}

/// Ours; returns the number of TCP connections it opened.
pub fn ours(emu: &Emulator, core: &Core, n: usize) -> u64 {
    let before = emu.accepted_connections();
    let table = core.routing_table();
    for i in 0..n {
        let device = table
            .insert(NewDevice::new(
                DevEui::new(dev_eui(i)),
                JoinEui::new(JOIN_EUI),
            ))
            .unwrap();
        assert_eq!(device.dev_eui, DevEui::new(dev_eui(i)));
    }
    for i in 0..n {
        let found = table
            .select(Select::dev_euis([DevEui::new(dev_eui(i))]))
            .unwrap();
        assert_eq!(found.len(), 1);
    }
    assert_eq!(table.select(Select::all()).unwrap().len(), n);
    emu.accepted_connections() - before
}

/// The baseline: the same requests by hand on `agent`, each answer read as bytes without
/// decoding; returns the number of TCP connections it opened.
pub fn baseline(emu: &Emulator, agent: &ureq::Agent, n: usize) -> u64 {
    let before = emu.accepted_connections();
    let base = emu.base_url();
    let bearer = format!("Bearer {}", emu.token());
    let insert = format!("{base}/devices/insert");
    for i in 0..n {
        let body = format!(
            r#"{{"DevEUI":"{:016x}","JoinEUI":"{JOIN_EUI:016x}"}}"#,
            dev_eui(i)
        );
        let mut response = agent
            .post(&insert)
            .header("Authorization", &bearer)
            .content_type("application/json")
            .send(&body)
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.body_mut().read_to_vec().unwrap();
        assert!(!body.is_empty());
    }
    for i in 0..n {
        let url = format!("{base}/devices/select?DevEUIs={:016x}", dev_eui(i));
        let mut response = agent
            .get(&url)
            .header("Authorization", &bearer)
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.body_mut().read_to_vec().unwrap();
        assert!(body.len() > 2);
    }
    let mut response = agent
        .get(format!("{base}/devices/select"))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert!(body.len() > n * 100);
    emu.accepted_connections() - before
}
