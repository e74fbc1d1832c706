use ran_routing::mic::{AesKey, Keys, Solver};
use ran_routing::{Core, DevEui, JoinEui, NewDevice};

fn main() -> Result<(), ran_routing::Error> {
    let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;

    // Subscribe an OTAA device. The RAN holds no keys: the LNS keeps the AppKey.
    let dev_eui: DevEui = "7abe1b8c93d7174f".parse()?;
    let join_eui: JoinEui = "3cedcf624f8b68f4".parse()?;
    let device = ran.routing_table().insert(NewDevice::otaa(dev_eui, join_eui))?;
    println!("{device:?}");
    let keys = Keys::new();
    keys.set_join_key(dev_eui, "2b7e151628aed2a6abf7158809cf4f3c".parse::<AesKey>()?);

    // Receive uplinks and answer each one's MIC challenge: naming the true MIC among
    // the candidates proves the LNS owns the device.
    let solver = Solver::new();
    let upstream = ran.upstream().connect()?;
    for message in upstream.iter() {
        match solver.solve(&keys, &message) {
            Ok(solved) => {
                upstream.send_upstream_ack(message.transaction_id, solved.dev_eui, solved.mic)?;
                keys.record(&solved);
            }
            Err(no_match) => {
                upstream.send_upstream_reject(message.transaction_id, no_match.reject_code())?;
            }
        }
    }
    Ok(())
}
