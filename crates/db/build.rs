//! `embed_migrations!` reads `migrations/` at compile time: a new or changed migration must
//! rebuild this crate, or the binaries would carry the old set.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
