//! ocp-sim's identity provider and Exports API over HTTPS on a free loopback port, served by a
//! runtime of its own (the tests around it are synchronous).

use ocp_sim::exports::{ExportsApi, ExportsConfig};

pub struct Ocp {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA the simulator's certificate chains to (PEM): what `ocp.ca_file` must hold.
    pub ca_pem: String,
    pub api: ExportsApi,
    pub runtime: tokio::runtime::Runtime,
}

impl Ocp {
    pub fn start(config: ExportsConfig) -> Ocp {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let api = ExportsApi::new(config, Vec::new());
        let served = runtime
            .block_on(ocp_sim::exports::serve(api.clone(), true))
            .unwrap();
        Ocp {
            url: served.url,
            ca_pem: served.ca_pem.unwrap(),
            api,
            runtime,
        }
    }
}
