//! A `callrec serve` in process: the real router and listener on loopback ports (the public one
//! and the operations one), over the stores a test gives, with a token for writes.

use callrec_ingest::config::Config;
use callrec_ingest::metrics::Metrics;
use callrec_ingest::objects::ObjectStore;
use callrec_ingest::pipeline::{EngineRunner, Pipeline};
use callrec_ingest::server::AppState;
use callrec_ingest::store::CallStore;
use std::sync::Arc;

pub const TOKEN: &str = "in-process-test-token-0123456789";

pub struct InProcess {
    pub url: String,
    /// The operations listener (`server.admin_listen`).
    pub admin_url: String,
    pub state: AppState,
    pub http: reqwest::Client,
}

/// Serves `config` (its server keys; `TOKEN` added to the write tokens) over `store` and
/// `objects`, with `ocp` when given, until the test ends.
pub async fn serve(
    mut config: Config,
    store: Arc<dyn CallStore>,
    objects: Arc<dyn ObjectStore>,
    ocp: Option<Arc<dyn callrec_ingest::ocp::OcpExports>>,
) -> InProcess {
    config.server.bearer_tokens.push(TOKEN.into());
    let routing = config.validate().unwrap();
    let state = AppState {
        pipeline: Pipeline {
            store,
            objects,
            routing: Arc::new(routing),
            engine: EngineRunner::start(1, 1 << 30, callrec_engine::ProcessConfig::default())
                .unwrap(),
            keep_staged: false,
            max_attempts: config.server.max_attempts,
            in_flight: Default::default(),
            end_wait: std::time::Duration::from_secs(config.server.end_wait_s),
        },
        queue: Arc::new(tokio::sync::Semaphore::new(config.server.queue_depth)),
        config: Arc::new(config.server.clone()),
        metrics: Arc::new(Metrics::new()),
        tasks: tokio_util::task::TaskTracker::new(),
        ocp,
        default_group: config.ocp.default_group.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    tokio::spawn(callrec_ingest::server::serve_admin(
        admin,
        state.clone(),
        std::future::pending(),
    ));
    tokio::spawn(callrec_ingest::server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    InProcess {
        url,
        admin_url,
        state,
        http: reqwest::Client::new(),
    }
}
