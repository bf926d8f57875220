#![doc = include_str!("../README.md")]

pub mod apns;
pub mod fcm;
pub mod keys;

use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::Version;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

pub use apns::{ApnsCredentials, ApnsPush, ApnsSim};
pub use fcm::{FcmCredentials, FcmPush, FcmSim};

/// Both stand-ins, each on its own `127.0.0.1:0` port with fresh keys — what a test needs.
pub struct PushSim {
    pub apns: ApnsSim,
    pub fcm: FcmSim,
}

impl PushSim {
    /// Starts both with the default identities (`ApnsCredentials::DEFAULT_*`,
    /// `FcmCredentials::DEFAULT_PROJECT`).
    pub async fn start() -> anyhow::Result<PushSim> {
        Ok(PushSim {
            apns: ApnsSim::start(apns::ApnsSimConfig::default(), loopback()?).await?,
            fcm: FcmSim::start(fcm::FcmSimConfig::default(), loopback()?).await?,
        })
    }

    pub async fn stop(self) {
        self.apns.stop().await;
        self.fcm.stop().await;
    }
}

fn loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
}

/// Installs jsonwebtoken's RustCrypto provider once (RS256/ES256 need it; a second install
/// by the embedding process is harmless).
pub(crate) fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// Faults a test (or `POST /sim/faults`) injects. Shared by the handlers of one stand-in.
#[derive(Debug, Default)]
pub struct Faults {
    unregistered: Mutex<HashSet<String>>,
    fail_next: Mutex<VecDeque<u16>>,
    delay: Mutex<Duration>,
}

impl Faults {
    /// The provider reports `token` as no longer registered (APNs 410 `Unregistered`,
    /// FCM 404 `UNREGISTERED`).
    pub fn unregister(&self, token: &str) {
        self.unregistered.lock().unwrap().insert(token.to_owned());
    }

    /// The next `count` provider requests fail with `status` (500 or 503 in practice).
    pub fn fail_next(&self, count: usize, status: u16) {
        let mut q = self.fail_next.lock().unwrap();
        q.extend(std::iter::repeat_n(status, count));
    }

    /// Every provider request waits this long before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// No faults any more.
    pub fn clear(&self) {
        self.unregistered.lock().unwrap().clear();
        self.fail_next.lock().unwrap().clear();
        *self.delay.lock().unwrap() = Duration::ZERO;
    }

    pub(crate) fn is_unregistered(&self, token: &str) -> bool {
        self.unregistered.lock().unwrap().contains(token)
    }

    pub(crate) fn take_failure(&self) -> Option<u16> {
        self.fail_next.lock().unwrap().pop_front()
    }

    pub(crate) async fn wait(&self) {
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Accepted requests, in arrival order.
#[derive(Debug)]
pub(crate) struct Recorder<T>(Mutex<Vec<T>>);

impl<T: Clone> Recorder<T> {
    pub(crate) fn new() -> Self {
        Recorder(Mutex::new(Vec::new()))
    }
    pub(crate) fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }
    pub(crate) fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Providers speak HTTP/2 only (APNs refuses anything else); the control routes under
/// `/sim` take HTTP/1.1 too, for curl.
pub(crate) fn http2_refusal(req: &HttpRequest) -> Option<HttpResponse> {
    (req.version() != Version::HTTP_2).then(|| {
        HttpResponse::VersionNotSupported().json(serde_json::json!({
            "reason": "HTTP/2 required",
        }))
    })
}

/// `POST /sim/faults` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FaultsBody {
    #[serde(default)]
    unregistered: Vec<String>,
    #[serde(default)]
    fail_next: Option<FailNext>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    clear: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FailNext {
    count: usize,
    status: u16,
}

pub(crate) async fn post_faults(
    faults: web::Data<Arc<Faults>>,
    body: web::Json<FaultsBody>,
) -> HttpResponse {
    let body = body.into_inner();
    if body.clear {
        faults.clear();
    }
    for t in &body.unregistered {
        faults.unregister(t);
    }
    if let Some(f) = body.fail_next {
        faults.fail_next(f.count, f.status);
    }
    if let Some(ms) = body.delay_ms {
        faults.set_delay(Duration::from_millis(ms));
    }
    HttpResponse::Ok().json(serde_json::json!({"ok": true}))
}

/// Serves a stand-in on `listener`: its `routes` and the shared `POST /sim/faults`, HTTP/1.1
/// and HTTP/2 with prior knowledge (h2c) on the one port.
pub(crate) fn serve<F>(
    listener: TcpListener,
    faults: Arc<Faults>,
    routes: F,
) -> std::io::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let faults = web::Data::new(faults);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(faults.clone())
            .app_data(web::PayloadConfig::new(256 * 1024))
            .route("/sim/faults", web::post().to(post_faults))
            .configure(routes.clone())
    })
    .workers(1)
    .disable_signals()
    .listen_auto_h2c(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    Ok(Running { handle, task })
}

/// A running actix server and the handle to stop it.
pub(crate) struct Running {
    pub(crate) handle: actix_web::dev::ServerHandle,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}

pub(crate) fn base_url(listener: &TcpListener) -> anyhow::Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}
