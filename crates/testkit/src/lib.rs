#![doc = include_str!("../README.md")]

use std::time::Duration;

use anyhow::Context;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The server every test database lives on (`TEST_DATABASE_ADMIN_URL`).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// NATS for tests (`NATS_URL`).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn url_for(database: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{database}")
}

/// A hash of the migrations, so a changed migration gets a new template.
fn migrations_hash() -> String {
    use std::hash::{Hash, Hasher};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut entries: Vec<_> = walk(&dir);
    entries.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in entries {
        path.file_name().hash(&mut h);
        std::fs::read(&path).unwrap_or_default().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn admin() -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .with_context(|| format!("connecting to {}", admin_url()))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Creates the migrated template once (serialised across test processes by an advisory lock).
async fn ensure_template() -> anyhow::Result<String> {
    let name = format!("ipelya_tmpl_{}", migrations_hash());
    let client = admin().await?;
    client
        .execute("SELECT pg_advisory_lock(727272)", &[])
        .await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        client
            .execute(&format!("DROP DATABASE IF EXISTS {building}"), &[])
            .await?;
        client
            .execute(&format!("CREATE DATABASE {building}"), &[])
            .await?;
        db::migrate::run_migrations(&url_for(&building)).await?;
        client
            .execute(&format!("ALTER DATABASE {building} RENAME TO {name}"), &[])
            .await?;
    }
    client
        .execute("SELECT pg_advisory_unlock(727272)", &[])
        .await?;
    Ok(name)
}

/// A database of one's own, migrated. Dropped by the test command's clean-up (a database
/// cannot be dropped while the test's pool still holds connections).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: db::Pool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::try_new().await.expect("test database")
    }

    async fn try_new() -> anyhow::Result<TestDb> {
        let template = ensure_template().await?;
        let name = format!("ipelya_test_{}", Uuid::new_v4().simple());
        let client = admin().await?;
        // Concurrent clones of one template are fine; retry the rare "being accessed" race.
        let mut attempt = 0;
        loop {
            match client
                .execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"), &[])
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing_free_sleep(e, attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let url = url_for(&name);
        let pool = db::connect_pool(&url, 3)?;
        Ok(TestDb { name, url, pool })
    }

    /// An empty, unmigrated database (migration tests).
    pub async fn empty() -> TestDb {
        let name = format!("ipelya_test_{}", Uuid::new_v4().simple());
        let client = admin().await.expect("admin connection");
        client
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .expect("create database");
        let url = url_for(&name);
        let pool = db::connect_pool(&url, 4).expect("pool");
        TestDb { name, url, pool }
    }

    pub async fn conn(&self) -> db::PooledConn {
        db::pool::conn(&self.pool).await.expect("connection")
    }

    /// A raw client for assertions in plain SQL.
    pub async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }
}

async fn tracing_free_sleep(_e: tokio_postgres::Error, attempt: u32) {
    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
}

/// A NATS namespace of one's own (subjects `<ns>.session.live`, streams `<NS>_SESSION`).
pub fn namespace() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub const JWT_SECRET: &str = "test-jwt-secret-with-enough-bytes-32";
pub const LIVEKIT_KEY: &str = "devkey";
pub const LIVEKIT_SECRET: &str = "test-livekit-secret-with-enough-bytes";

/// A client access token for a user.
pub fn token_for(user: Uuid) -> String {
    auth::mint(JWT_SECRET.as_bytes(), user, 3600)
}

/// Inserts a profile and returns its id.
pub async fn profile(db: &TestDb, username: &str, is_creator: bool, role: Option<&str>) -> Uuid {
    let id = Uuid::new_v4();
    let client = db.sql().await;
    client
        .execute(
            "INSERT INTO profiles (id, username, is_creator, role) VALUES ($1, $2, $3, $4)",
            &[&id, &username, &is_creator, &role],
        )
        .await
        .expect("insert profile");
    id
}

/// Waits until `f` returns `Some`, polling; panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts that every `$ref` of an OpenAPI document names one of its component schemas.
pub fn assert_openapi_refs_resolve(doc: &serde_json::Value) {
    fn walk(doc: &serde_json::Value, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    let name = r.strip_prefix("#/components/schemas/").expect(r);
                    assert!(
                        doc["components"]["schemas"][name].is_object(),
                        "dangling {r}"
                    );
                }
                map.values().for_each(|v| walk(doc, v));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    walk(doc, doc);
}
